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
arrived, so packets held up on the network do not move their frames.

A track whose media cannot be kept (a video keyframe claiming an impossible picture
size, or anything else its file refuses) ends alone: its file is closed, the
timeline notes it, and the other tracks and the recording go on. Only the disk
failing (an OSError) stops the whole recording.

Writing happens on the event loop (a packet is a few microseconds of work, into
the page cache); every few seconds the files are synced to the disk from a thread,
so that a power cut loses no more than that.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterBuffer

from ..moderation import Kind
from ..pictures import vp8_keyframe_size
from ..recording.files import TIMELINE, Timeline, damage_note, track_path
from ..recording.track_file import TrackFile, UnrecordableFrame
from .passthrough.rtp import CLOCK_RATES, Received, newer
from .passthrough.source import PacketSink, PacketSource

log = logging.getLogger(__name__)

# A frame whose RTP time is this far ahead of real time, or behind it, is placed
# anew (the publisher restarted its clock): packets held up on the network for a
# while arrive late, but never this late, and never early.
MAX_AHEAD_MS: Final = 1000
MAX_BEHIND_MS: Final = 10_000
# How often what was written is synced to the disk.
SYNC_SECONDS: Final = 2.0
# As aiortc's receiver: enough packets for the largest keyframe at a browser's bitrates.
_JITTER_PACKETS: Final = 128

Track = tuple[str, Kind]
Failed = Callable[[str], None]


class TrackRecorder(PacketSink):
    """One participant's audio or video, written to its file as it comes. It never
    limits the publisher's bitrate (`remb` stays None). `failed` is told when the
    recording cannot go on, `damaged` when only this track cannot (without it, that
    stops the recording too)."""

    judges_pictures = True  # a picture out of bounds ends this track, and is noted

    def __init__(
        self,
        file: TrackFile,
        kind: Kind,
        now_ms: Callable[[], int],
        failed: Failed,
        damaged: Failed | None = None,
    ):
        self._file = file
        self._kind = kind
        self._clock_rate = CLOCK_RATES[kind]
        self._now_ms = now_ms
        self._failed = failed
        self._damaged = damaged or failed
        self._restart()

    def _restart(self) -> None:
        """From the next packet on, a new run: new timing, and video from a keyframe,
        asked for now."""
        self._ssrc: int | None = None
        self._jitter = JitterBuffer(capacity=_JITTER_PACKETS, is_video=True)
        self._newest_seq: int | None = None
        self._anchor: tuple[int, int] | None = None  # (RTP timestamp, ms) of the run
        self._keyframe_seen = False
        if self._source is not None:
            self._source.request_keyframe()

    def forward(self, packet: Received, keyframe: bool, ntp: int) -> None:
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            self._restart()  # the publisher began a new stream
        self._ssrc = packet.ssrc
        if self._kind == "audio":
            self._take_audio(packet)
        else:
            self._take_video(packet)

    def _take_audio(self, packet: Received) -> None:
        """An Opus packet is a whole frame; a late one is left out (its moment has
        been written past)."""
        if self._newest_seq is not None and not newer(packet.sequence_number, self._newest_seq):
            return
        self._newest_seq = packet.sequence_number
        self._file.write(packet.payload, self._pts(packet.timestamp))

    def _take_video(self, packet: Received) -> None:
        try:
            packet._data = vp8_depayload(packet.payload)
        except ValueError:
            return
        # aiortc's jitter buffer reads a packet's sequence number, timestamp and _data.
        lost, frame = self._jitter.add(packet)  # type: ignore[arg-type]
        if lost:
            # Packets were given up on: what follows would not decode until a keyframe.
            self._keyframe_seen = False
        if frame is None:
            return
        keyframe = vp8_keyframe_size(frame.data) is not None
        if not (keyframe or self._keyframe_seen):
            if self._source is not None:
                self._source.request_keyframe()  # at most once a second, however asked
            return
        self._keyframe_seen = True
        self._file.write(frame.data, self._pts(frame.timestamp), keyframe=keyframe)

    def _pts(self, timestamp: int) -> int:
        now = self._now_ms()
        if self._anchor is not None:
            anchor_ts, anchor_ms = self._anchor
            elapsed = ((timestamp - anchor_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            pts = anchor_ms + elapsed * 1000 // self._clock_rate
            if -MAX_BEHIND_MS <= pts - now <= MAX_AHEAD_MS:
                return pts
        self._anchor = (timestamp, now)
        return now

    def failed(self, exc: Exception) -> None:
        """Writing raised. The disk (full, say): the recording cannot go on; anything
        else is this track's media: it ends alone."""
        self.connect(None)
        if isinstance(exc, OSError):
            # The system's words (e.g. "No space left on device"), never a path.
            why = exc.strerror or type(exc).__name__
            self._failed(f"The recording could not be saved on the server ({why}).")
        else:
            self._damaged(str(exc) if isinstance(exc, UnrecordableFrame) else type(exc).__name__)

    @property
    def path(self) -> Path:
        return self._file.path

    def close(self) -> None:
        self.connect(None)
        self._file.close()


class Recorder:
    """A conference's recording while it is written: its tracks and its timeline."""

    def __init__(self, recording_id: int, directory: Path, failed: Failed) -> None:
        self._recording_id = recording_id
        self._directory = directory
        self._origin = time.monotonic()
        self._timeline = Timeline(directory / TIMELINE)
        self._failed = failed
        self._tracks: dict[Track, TrackRecorder] = {}
        # Ended for the rest of this recording: what they send is not recorded again.
        self._damaged: set[Track] = set()
        # What the room last asked to record, damaged tracks included.
        self._wanted: dict[Track, PacketSource] = {}
        self._last_entry: dict[str, object] | None = None
        self.paused = False
        self.broken = False
        self._syncing = asyncio.create_task(self._sync_regularly(), name="recording-sync")

    def now_ms(self) -> int:
        return round((time.monotonic() - self._origin) * 1000)

    def pause(self, paused: bool) -> None:
        """Pause at once (nothing more is written from now on), or resume at the next
        `route`."""
        if paused != self.paused:
            self.paused = paused
            if paused:
                self.route({})

    def route(self, recorded: Mapping[Track, PacketSource]) -> None:
        """Record exactly `recorded` from now on (nothing while paused), but for the
        damaged tracks."""
        self._wanted = dict(recorded)
        if self.paused or self.broken:
            recorded = {}
        recorded = {t: source for t, source in recorded.items() if t not in self._damaged}
        for track, recorder in self._tracks.items():
            if track not in recorded:
                recorder.connect(None)
        for track, source in recorded.items():
            if track not in self._tracks:
                participant, kind = track
                file = TrackFile(track_path(self._directory, participant, kind), kind)
                damaged = functools.partial(self._damage, track)
                self._tracks[track] = TrackRecorder(file, kind, self.now_ms, self._break, damaged)
            self._tracks[track].connect(source)
        entry: dict[str, object] = {
            "recording": not (self.paused or self.broken),
            "video": sorted(p for p, kind in recorded if kind == "video"),
            "audio": sorted(p for p, kind in recorded if kind == "audio"),
        }
        if entry != self._last_entry:
            self._last_entry = entry
            self._write(entry)

    def _damage(self, track: Track, why: str) -> None:
        """One track's media cannot be kept: that track ends, the others go on."""
        if track in self._damaged or self.broken:
            return
        self._damaged.add(track)
        participant, kind = track
        # The participant's id, as their files are named: never a name.
        log.warning(
            "recording %d: the %s track of participant %s ends here (%s); the others go on",
            self._recording_id, kind, participant, why,
        )  # fmt: skip
        try:
            self._tracks[track].close()  # plays up to its last frame kept
        except Exception:
            log.warning("a damaged track could not be closed cleanly", exc_info=True)
        self._write(damage_note(participant, kind, why))
        self.route(self._wanted)

    def _break(self, reason: str) -> None:
        if not self.broken:
            self.broken = True
            for recorder in self._tracks.values():
                recorder.connect(None)
            self._failed(reason)

    def _write(self, entry: dict[str, object]) -> None:
        """Append `entry` to the timeline, at the time now."""
        try:
            self._timeline.append({"t": self.now_ms(), **entry})
        except OSError as exc:
            self._break(f"The recording could not be saved on the server ({exc.strerror}).")

    async def _sync_regularly(self) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            paths = [self._timeline.path, *(r.path for r in self._tracks.values())]
            try:
                await asyncio.to_thread(_sync_to_disk, paths)
            except OSError as exc:
                self._break(f"The recording could not be saved on the server ({exc.strerror}).")

    def close(self) -> None:
        """The end: every file is closed, and the timeline says it ended cleanly."""
        self._syncing.cancel()
        for recorder in self._tracks.values():
            try:
                recorder.close()
            except OSError:
                log.warning("a recorded track could not be closed cleanly", exc_info=True)
        if not self.broken:
            self._write({"end": True})


def _sync_to_disk(paths: list[Path]) -> None:
    """Flush what the page cache holds of these files to the disk (a file's data is
    synced through any descriptor of it)."""
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # a track opened at its first frame: none yet
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
