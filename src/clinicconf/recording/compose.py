"""Composing a recording: its per-participant tracks and its timeline made into one
playable file, `conference.webm` (VP8 and Opus), after the conference.

The output's clock counts recorded time only. The timeline is cut into spans in which
nothing changes (who is shown, who is audible); paused spans are left out and the
recorded ones laid end to end. The composer walks that output time once, a second at
a time, and pulls from each track, in step, only what that second needs:

- video: a track is decoded as a stream, keeping its latest picture. Every 1/15 s,
  the pictures of the participants shown then are scaled into a grid on a 960x540
  canvas (YUV planes, as the encoder takes them) and encoded.
- audio: a track is decoded as a stream into 48 kHz mono samples placed by their
  timestamps (gaps are silence). A second of the participants audible then is
  summed, clipped and encoded; a participant withheld then is not read at all.

So memory holds a picture and about a second of sound per track whatever the
conference's length; a picture is never larger than files.py's bounds: a track ends
(is shown no more, and is noted damaged in the timeline) at a keyframe claiming a
size out of them, before it is decoded. A track that cannot be opened is left out,
and a frame that cannot be decoded is skipped: the others are composed all the same.
The file is written under a temporary name (its owner's only) and renamed when
complete: the final name never holds half a file.

    python -m clinicconf.recording.compose DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
from av.container import InputContainer
from numpy.typing import NDArray

from ..owner_only import create_owner_only_file, restrict_umask
from ..pictures import impossible_keyframe
from .files import (
    COMPOSED,
    TIMELINE,
    DamagedTrack,
    Timeline,
    damage_note,
    damaged_tracks,
    read_timeline,
    track_files,
)

WIDTH: Final = 960
HEIGHT: Final = 540
FRAMES_PER_SECOND: Final = 15
SAMPLE_RATE: Final = 48_000
SAMPLES_PER_MS: Final = SAMPLE_RATE // 1000
VIDEO_BITRATE: Final = 1_200_000
AUDIO_BITRATE: Final = 64_000
MOST_SHOWN: Final = 16
# Composed per step: what is held in memory, and how often progress can move.
STEP_MS: Final = 1000
# The server's conferences come first: VP8's fastest realtime setting (cpu-used 16
# encodes a busy picture in about 5 ms here, 8 in 14 ms), on one thread; a keyframe
# every 10 s keeps the file quick to seek in.
_VP8_OPTIONS: Final = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0"}
_KEYFRAME_INTERVAL: Final = 10 * FRAMES_PER_SECOND
_BLACK: Final = (16, 128, 128)  # Y, U, V (video range)
# Columns and rows for up to so many pictures; more are shown 4x4.
_GRIDS: Final = ((1, (1, 1)), (2, (2, 1)), (4, (2, 2)), (6, (3, 2)), (9, (3, 3)))


class NothingRecorded(ValueError):
    """The recording holds no recorded time: there is nothing to compose."""


@dataclass(frozen=True)
class Composition:
    duration_ms: int
    size_bytes: int


@dataclass(frozen=True)
class Span:
    """Recorded time (milliseconds from the recording's start) in which who is shown
    and who is audible do not change."""

    start_ms: int
    end_ms: int
    video: tuple[str, ...]  # in the order participants first appear in the timeline
    audio: frozenset[str]


def _no_progress(fraction: float) -> None:
    pass


def compose(directory: Path, progress: Callable[[float], None] = _no_progress) -> Composition:
    """Write `directory / COMPOSED` from the recording's tracks and timeline; call
    `progress` with the share done (0 to 1) at most about a hundred times."""
    timeline = read_timeline(directory)
    if not timeline:
        raise NothingRecorded("Nothing was recorded (there is no timeline).")
    tracks = track_files(directory)
    spans = recorded_spans(timeline, _end_ms(timeline, [path for path, _, _ in tracks]))
    duration_ms = sum(span.end_ms - span.start_ms for span in spans)
    if duration_ms <= 0:
        raise NothingRecorded("Nothing was recorded (no time was recorded).")
    target = directory / COMPOSED
    partial = target.with_name(f".{target.name}.partial")
    cut: list[DamagedTrack] = []
    try:
        with ExitStack() as stack:
            videos: dict[str, _VideoTrack] = {}
            sounds: dict[str, _AudioTrack] = {}
            for path, participant, kind in tracks:
                container = _open(path)
                if container is None:
                    continue
                stack.enter_context(container)
                if kind == "video":
                    videos[participant] = _VideoTrack(container, participant, cut.append)
                else:
                    sounds[participant] = _AudioTrack(container)
            partial.unlink(missing_ok=True)  # a composition cut short left it, of any mode
            create_owner_only_file(partial)
            with av.open(str(partial), "w", format="webm") as output:
                _Composer(output, videos, sounds).run(spans, duration_ms, progress)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _note_damaged(directory, cut)
    return Composition(duration_ms=duration_ms, size_bytes=target.stat().st_size)


def _note_damaged(directory: Path, cut: list[DamagedTrack]) -> None:
    """Into the timeline, for the recording's page: the tracks the composer ended
    early that the recorder had not (a composition begun again finds them again)."""
    noted = {(track.participant, track.kind) for track in damaged_tracks(directory)}
    timeline = Timeline(directory / TIMELINE)
    for track in cut:
        if (track.participant, track.kind) not in noted:
            timeline.append(
                {"t": track.at_ms, **damage_note(track.participant, track.kind, track.why)}
            )


def recorded_spans(timeline: list[dict[str, Any]], end_ms: int) -> list[Span]:
    """The timeline's recorded stretches up to `end_ms`, in order."""
    order = list(dict.fromkeys(p for entry in timeline for p in entry.get("video", [])))
    changes = [entry for entry in timeline if "recording" in entry]
    spans = []
    for entry, following in zip(changes, [*changes[1:], None], strict=True):
        start = int(entry["t"])
        stop = end_ms if following is None else min(end_ms, int(following["t"]))
        if entry["recording"] and stop > start:
            shown = set(entry.get("video", []))
            video = tuple(p for p in order if p in shown)
            spans.append(Span(start, stop, video, frozenset(entry.get("audio", []))))
    return spans


def _end_ms(timeline: list[dict[str, Any]], tracks: list[Path]) -> int:
    """The recording's end: the timeline says so when it ended cleanly; after a crash,
    the tracks may have gone on after the timeline's last change."""
    for entry in timeline:
        if entry.get("end"):
            return int(entry["t"])
    return max([int(timeline[-1]["t"]), *(_last_packet_ms(path) for path in tracks)])


def _last_packet_ms(path: Path) -> int:
    """When a track's last packet ends, from the packets themselves: a file cut short
    by a crash has no duration in its header."""
    container = _open(path)
    if container is None:
        return 0
    with container:
        last = 0.0
        for packet in _packets(container):
            if packet.pts is not None and packet.time_base is not None:
                end = (packet.pts + (packet.duration or 0)) * packet.time_base
                last = max(last, float(end))
    return round(last * 1000)


def _open(path: Path) -> InputContainer | None:
    """A track file, or None when a crash left it without even its header (empty, or
    cut short: FFmpeg finds invalid data, or reads past the end)."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError:
        return None
    if not container.streams:
        container.close()
        return None
    container.streams[0].codec_context.thread_count = 1  # a shared server: one core
    return container


def _packets(container: InputContainer) -> Iterator[av.Packet[Any]]:
    """A track's packets in order; a file cut short by a crash ends at its last
    whole packet."""
    try:
        yield from container.demux(container.streams[0])
    except av.error.FFmpegError:
        return


def _decoded(packets: Iterator[av.Packet[Any]]) -> Iterator[Any]:
    """A track's frames, decoded one packet at a time."""
    for packet in packets:
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue  # a damaged frame (a crash's last one): the decoder recovers
        yield from frames


def _packet_ms(packet: av.Packet[Any]) -> float:
    if packet.pts is None or packet.time_base is None:
        return 0.0
    return float(packet.pts * packet.time_base * 1000)


def _ms(frame: av.VideoFrame | av.AudioFrame) -> float:
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base * 1000)


class _VideoTrack:
    """One participant's video, decoded as the output's time goes forward: its latest
    picture, scaled when shown. It ends at a keyframe whose picture size is out of
    bounds (`cut` is told): from that moment on it shows nothing."""

    def __init__(
        self, container: InputContainer, participant: str, cut: Callable[[DamagedTrack], None]
    ) -> None:
        self._participant = participant
        self._cut = cut
        self._cut_at_ms: float | None = None
        self._frames = (
            f for f in _decoded(self._bounded(_packets(container))) if f.pts is not None
        )
        self._next: av.VideoFrame | None = next(self._frames, None)
        self.current: av.VideoFrame | None = None
        self._scaled: av.VideoFrame | None = None  # `current` at its shown size

    def _bounded(self, packets: Iterator[av.Packet[Any]]) -> Iterator[av.Packet[Any]]:
        """The packets up to the first keyframe claiming a picture size out of bounds:
        decoding it would take memory without bound."""
        for packet in packets:
            why = impossible_keyframe(bytes(memoryview(packet)[:10]))
            if why is not None:
                at_ms = _packet_ms(packet)
                self._cut_at_ms = at_ms
                self._cut(DamagedTrack(self._participant, "video", round(at_ms), why))
                return
            yield packet

    def advance(self, time_ms: float) -> None:
        """Decode up to the latest picture at or before `time_ms` (never back)."""
        while self._next is not None and _ms(self._next) <= time_ms:
            self.current, self._next = self._next, next(self._frames, None)
            self._scaled = None
        if self._cut_at_ms is not None and time_ms >= self._cut_at_ms:
            self.current = None

    def scaled(self, width: int, height: int) -> av.VideoFrame:
        """The current picture at that size, in the canvas's format; a picture shown
        in several output frames is scaled once."""
        assert self.current is not None
        scaled = self._scaled
        if scaled is None or (scaled.width, scaled.height) != (width, height):
            scaled = self.current.reformat(width=width, height=height, format="yuv420p")
            self._scaled = scaled
        return scaled


class _AudioTrack:
    """One participant's sound, decoded as the output's time goes forward into 48 kHz
    mono samples placed by their timestamps."""

    def __init__(self, container: InputContainer) -> None:
        self._frames = (f for f in _decoded(_packets(container)) if f.pts is not None)
        # One row of samples per channel, averaged below: FFmpeg's own downmix would
        # make a voice sent in stereo (the same on both sides) 3 dB louder.
        self._planar = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
        # Decoded and not yet read past: (first sample, samples), in order.
        self._pending: deque[tuple[int, NDArray[np.float32]]] = deque()
        self._decoded_to = 0  # where the last frame decoded starts

    def read(self, start: int, count: int) -> NDArray[np.float32]:
        """Samples `start` to `start + count`, silence where the track has none;
        `start` never goes back, and what comes before it is let go."""
        stop = start + count
        while self._decoded_to < stop and self._decode_one(start):
            pass
        block = np.zeros(count, np.float32)
        for first, samples in self._pending:
            low, high = max(first, start), min(first + len(samples), stop)
            if high > low:
                block[low - start : high - start] = samples[low - first : high - first]
        while self._pending and self._pending[0][0] + len(self._pending[0][1]) <= stop:
            self._pending.popleft()
        return block

    def _decode_one(self, start: int) -> bool:
        """Decode the next frame, kept unless it ends before `start`; False at the end."""
        frame = next(self._frames, None)
        if frame is None:
            return False
        first = round(_ms(frame) * SAMPLES_PER_MS)
        self._decoded_to = first
        converted = self._planar.resample(frame)
        samples = np.concatenate([c.to_ndarray() for c in converted], axis=1).mean(axis=0)
        if first + len(samples) > start:
            self._pending.append((first, samples))
        return True


def grid(count: int) -> tuple[int, int]:
    """Columns and rows for `count` pictures (at most MOST_SHOWN are shown)."""
    for most, columns_rows in _GRIDS:
        if count <= most:
            return columns_rows
    return (4, 4)


def _fit(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest even size with the picture's aspect ratio inside the box."""
    scale = min(box_width / width, box_height / height)

    def even(value: float, most: int) -> int:
        return max(2, min(most // 2 * 2, round(value / 2) * 2))

    return even(width * scale, box_width), even(height * scale, box_height)


def _planes(frame: av.VideoFrame) -> list[NDArray[np.uint8]]:
    """A yuv420p frame's Y, U and V planes as writable arrays (without row padding)."""
    return [
        np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[
            : plane.height, : plane.width
        ]
        for plane in frame.planes
    ]


class _Composer:
    def __init__(
        self,
        output: av.container.OutputContainer,
        videos: dict[str, _VideoTrack],
        sounds: dict[str, _AudioTrack],
    ) -> None:
        self._output = output
        self._videos = videos
        self._sounds = sounds
        self._picture = output.add_stream("libvpx", rate=FRAMES_PER_SECOND)
        self._picture.width, self._picture.height = WIDTH, HEIGHT
        self._picture.pix_fmt = "yuv420p"
        self._picture.bit_rate = VIDEO_BITRATE
        self._picture.gop_size = _KEYFRAME_INTERVAL
        self._picture.options = dict(_VP8_OPTIONS)
        self._picture.codec_context.thread_count = 1
        self._sound = output.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        self._sound.format = "flt"
        self._sound.bit_rate = AUDIO_BITRATE

    def run(self, spans: list[Span], duration_ms: int, progress: Callable[[float], None]) -> None:
        done_ms = 0  # output time composed
        pictures = 0  # output frames encoded
        percent = 0  # progress last reported
        for span in spans:
            for start in range(span.start_ms, span.end_ms, STEP_MS):
                stop = min(start + STEP_MS, span.end_ms)
                # The output frames due before this step's end, at their recorded time.
                while pictures * 1000 < (done_ms + stop - start) * FRAMES_PER_SECOND:
                    self._encode_picture(
                        pictures, start + pictures * 1000 / FRAMES_PER_SECOND - done_ms, span
                    )
                    pictures += 1
                self._encode_sound(done_ms * SAMPLES_PER_MS, start, stop, span)
                done_ms += stop - start
                if done_ms * 100 // duration_ms > percent:
                    percent = done_ms * 100 // duration_ms
                    progress(done_ms / duration_ms)
        self._output.mux(self._picture.encode(None))
        self._output.mux(self._sound.encode(None))

    def _encode_picture(self, number: int, time_ms: float, span: Span) -> None:
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        canvas = _planes(frame)
        for plane, value in zip(canvas, _BLACK, strict=True):
            plane.fill(value)
        shown = []
        for participant in span.video:
            track = self._videos.get(participant)
            if track is not None:
                track.advance(time_ms)
                if track.current is not None:
                    shown.append(track)
        shown = shown[:MOST_SHOWN]
        columns, rows = grid(len(shown))
        for index, track in enumerate(shown):
            assert track.current is not None
            column, row = index % columns, index // columns
            left, right = column * WIDTH // columns, (column + 1) * WIDTH // columns
            top, bottom = row * HEIGHT // rows, (row + 1) * HEIGHT // rows
            width, height = _fit(
                track.current.width, track.current.height, right - left, bottom - top
            )
            # Centred in its cell, at even coordinates: chroma has half the resolution.
            x = (left + (right - left - width) // 2) // 2 * 2
            y = (top + (bottom - top - height) // 2) // 2 * 2
            for plane, picture, scale in zip(
                canvas, _planes(track.scaled(width, height)), (1, 2, 2), strict=True
            ):
                plane[y // scale : (y + height) // scale, x // scale : (x + width) // scale] = (
                    picture
                )
        frame.pts, frame.time_base = number, Fraction(1, FRAMES_PER_SECOND)
        self._output.mux(self._picture.encode(frame))

    def _encode_sound(self, first_sample: int, start_ms: int, stop_ms: int, span: Span) -> None:
        """The recorded time from `start_ms` to `stop_ms`, mixed, at `first_sample` of
        the output."""
        start, count = start_ms * SAMPLES_PER_MS, (stop_ms - start_ms) * SAMPLES_PER_MS
        mix = np.zeros(count, np.float32)
        for participant, track in self._sounds.items():
            if participant in span.audio:
                mix += track.read(start, count)
        np.clip(mix, -1.0, 1.0, out=mix)
        frame = av.AudioFrame.from_ndarray(mix.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts, frame.time_base = first_sample, Fraction(1, SAMPLE_RATE)
        self._output.mux(self._sound.encode(frame))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.recording.compose",
        description=f"Compose a recording's tracks into one playable file, {COMPOSED}.",
    )
    parser.add_argument("directory", type=Path, help="the recording's directory")
    args = parser.parse_args(argv)
    os.nice(10)  # live conferences first
    restrict_umask()  # the composed file is health information too

    def report(fraction: float) -> None:
        print(f"progress {fraction:.3f}", flush=True)

    try:
        composition = compose(args.directory, report)
    except (NothingRecorded, OSError, av.FFmpegError) as error:
        print(error, file=sys.stderr)  # the reason the recording's page shows
        return 1
    print(f"done {json.dumps(asdict(composition))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
