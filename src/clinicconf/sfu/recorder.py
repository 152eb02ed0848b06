"""The recorder: a conference's permitted media, written to disk as it arrives.

Each recorded track is one more consumer of its publisher's `PacketSource`, like a
subscriber's outlet: it gets every packet (retransmissions included), puts video
packets back into pictures (aiortc's jitter buffer, as aiortc's own receiver does)
and writes the pictures and the sound into the track's WebM file without decoding
them (recording/files.py). What is recorded follows the router's table for an
audience that is not a host: the sound the moderator permits, and the videos on
everyone's screen. The timeline records each change of that, and the pauses, so
that the composer can show the conference as it was shown.

Times are milliseconds since the recording began, on the monotonic clock; a
track's frames are placed by their RTP timestamps from the moment the first one
arrived, so a late packet does not move a frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from ..recording.files import TIMELINE, Timeline, TrackFile, track_path, vp8_keyframe_size
from .forward import Source
from .passthrough import CLOCK_RATES, PacketSource, newer
from .router import Kind

log = logging.getLogger(__name__)

# A frame whose RTP time strays further than this from its arrival is placed anew
# (the publisher paused, or restarted its clock).
MAX_DRIFT_MS: Final = 1000
# As aiortc's receiver: enough packets for the largest keyframe at a browser's bitrates.
_JITTER_PACKETS: Final = 128

Track = tuple[str, Kind]
Failed = Callable[[str], None]


class TrackRecorder:
    """One participant's audio or video, written to its file as it comes."""

    # Never limits the publisher's bitrate (read by PacketSource with the outlets').
    remb: int | None = None

    def __init__(self, file: TrackFile, kind: Kind, now_ms: Callable[[], int], failed: Failed):
        self._file = file
        self._kind = kind
        self._clock_rate = CLOCK_RATES[kind]
        self._now_ms = now_ms
        self._failed = failed
        self._source: PacketSource | None = None
        self._restart()

    def _restart(self) -> None:
        """From the next packet on, a new run: new timing, and video from a keyframe."""
        self._ssrc: int | None = None
        self._jitter = JitterBuffer(capacity=_JITTER_PACKETS, is_video=True)
        self._newest_seq: int | None = None
        self._anchor: tuple[int, int] | None = None  # (RTP timestamp, ms) of the run
        self._keyframe_seen = False

    def connect(self, source: Source | None) -> None:
        assert source is None or isinstance(source, PacketSource)
        if source is self._source:
            return
        if self._source is not None:
            self._source.discard(self)
        self._source = source
        self._restart()
        if source is not None:
            source.add(self)
            source.request_keyframe()

    async def forward(self, packet: RtpPacket, keyframe: bool, ntp_now: int) -> None:
        if packet.ssrc != self._ssrc:
            self._restart()
            self._ssrc = packet.ssrc
        if self._kind == "audio":
            self._take_audio(packet)
        else:
            self._take_video(packet)

    def _take_audio(self, packet: RtpPacket) -> None:
        """An Opus packet is a whole frame; a late one is left out (its moment has
        been written past)."""
        if self._newest_seq is not None and not newer(packet.sequence_number, self._newest_seq):
            return
        self._newest_seq = packet.sequence_number
        self._file.write(packet.payload, self._pts(packet.timestamp))

    def _take_video(self, packet: RtpPacket) -> None:
        try:
            packet._data = vp8_depayload(packet.payload)  # type: ignore[attr-defined]
        except ValueError:
            return
        lost, frame = self._jitter.add(packet)
        if lost and self._source is not None:
            self._source.request_keyframe()
        if frame is None:
            return
        keyframe = vp8_keyframe_size(frame.data) is not None
        if not (keyframe or self._keyframe_seen):
            return  # would not decode: the keyframe asked for at connect is coming
        self._keyframe_seen = True
        self._file.write(frame.data, self._pts(frame.timestamp), keyframe=keyframe)

    def _pts(self, timestamp: int) -> int:
        now = self._now_ms()
        if self._anchor is not None:
            anchor_ts, anchor_ms = self._anchor
            elapsed = ((timestamp - anchor_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            pts = anchor_ms + elapsed * 1000 // self._clock_rate
            if abs(pts - now) <= MAX_DRIFT_MS:
                return pts
        self._anchor = (timestamp, now)
        return now

    def failed(self, exc: Exception) -> None:
        """Writing raised (the disk is full, say): the recording cannot go on."""
        self.connect(None)
        self._failed(f"A track could not be written ({type(exc).__name__}: {exc}).")

    def close(self) -> None:
        self.connect(None)
        self._file.close()


class Recorder:
    """A conference's recording while it is written: its tracks and its timeline."""

    def __init__(self, directory: Path, failed: Failed) -> None:
        self._directory = directory
        self._origin = time.monotonic()
        self._timeline = Timeline(directory / TIMELINE)
        self._failed = failed
        self._tracks: dict[Track, TrackRecorder] = {}
        self._last_entry: dict[str, object] | None = None
        self.paused = False
        self.broken = False

    def now_ms(self) -> int:
        return round((time.monotonic() - self._origin) * 1000)

    def route(self, recorded: Mapping[Track, PacketSource]) -> None:
        """Record exactly `recorded` from now on (nothing while paused)."""
        if self.paused or self.broken:
            recorded = {}
        for track, recorder in self._tracks.items():
            if track not in recorded:
                recorder.connect(None)
        for track, source in recorded.items():
            if track not in self._tracks:
                participant, kind = track
                file = TrackFile(track_path(self._directory, participant, kind), kind)
                self._tracks[track] = TrackRecorder(file, kind, self.now_ms, self._break)
            self._tracks[track].connect(source)
        entry: dict[str, object] = {
            "recording": not (self.paused or self.broken),
            "video": sorted(p for p, kind in recorded if kind == "video"),
            "audio": sorted(p for p, kind in recorded if kind == "audio"),
        }
        if entry != self._last_entry:
            self._last_entry = entry
            self._write({"t": self.now_ms(), **entry})

    def _break(self, reason: str) -> None:
        if not self.broken:
            self.broken = True
            for recorder in self._tracks.values():
                recorder.connect(None)
            self._failed(reason)

    def _write(self, entry: dict[str, object]) -> None:
        try:
            self._timeline.append(entry)
        except OSError as exc:
            self._break(f"The timeline could not be written ({exc}).")

    def close(self) -> None:
        """The end: every file is closed, and the timeline says it ended cleanly."""
        for recorder in self._tracks.values():
            try:
                recorder.close()
            except OSError:
                log.warning("a recorded track could not be closed cleanly", exc_info=True)
        if not self.broken:
            self._write({"t": self.now_ms(), "end": True})
