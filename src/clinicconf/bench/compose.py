"""Recordings: what writing a conference's tracks costs the server while it runs, and
how long composing them into one file takes after it.

In a temporary directory it records the tracks of a conference of --people lasting
--minutes through the recorder (sfu/recorder.py's TrackRecorder, fed RTP packets as
a publisher's PacketSource feeds it): each participant's video is bench/clip.py's
640x480 VP8 clip at 25 fps (about 900 kbit/s), looped, and their sound the clip's
Opus tone in 20 ms frames; everyone is shown and audible throughout, and the
recording ends cleanly. The CPU time spent gives the recorder's cost per packet and
per recorded track. Then it
composes the recording (recording/compose.py) in this process, pinned to one core,
and reports the wall and CPU time, the output's size, how many times faster than
real time it ran, and the process's peak memory. See docs/benchmarks.md, which
--write updates.

    python -m clinicconf.bench.compose [--minutes 10] [--people 3] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

import av
from aiortc.codecs.vpx import Vp8Encoder

from ..recording.compose import compose
from ..recording.files import TIMELINE, Kind, Timeline, track_path
from ..recording.track_file import TrackFile
from ..sfu.passthrough.rtp import CLOCK_RATES, Received
from ..sfu.recorder import TrackRecorder
from . import clip
from .measures import write_doc

AUDIO_FRAME_MS: Final = clip.AUDIO_FRAME_SAMPLES * 1000 // clip.SAMPLE_RATE
VIDEO_FRAME_MS: Final = 1000 // clip.FRAMES_PER_SECOND
DOC_BEGIN: Final = (
    "<!-- bench-compose: begin (written by python -m clinicconf.bench.compose --write) -->"
)
DOC_END: Final = "<!-- bench-compose: end -->"
INTRODUCTION: Final = """## Recordings: composing

`src/clinicconf/bench/compose.py` measures what recording costs (issue 5): the
recorder's CPU for writing each track as its media arrives, and the time to compose
a conference's tracks into one playable file afterwards.

It records, in a temporary directory, the tracks of a conference of `--people`
lasting `--minutes` through the recorder itself (`sfu/recorder.py`'s
`TrackRecorder`, fed RTP packets as a publisher's `PacketSource` feeds it: video
packets put back into pictures, then written without decoding): each participant's
video is `bench/clip.py`'s 640x480 VP8 clip at 25 fps, looped, and their sound its
Opus tone in 20 ms frames; everyone is shown and audible throughout. The CPU time it
takes gives the share of a core per recorded track. Then it composes the recording
(`recording/compose.py`: every track decoded, a 960x540 15 fps grid encoded with
libvpx on one thread, the sound mixed and encoded with libopus) in the same process,
pinned to one core, and reports the wall and CPU time, the file's size, how many
times faster than real time it ran, and the process's peak memory.

```
.venv/bin/python -m clinicconf.bench.compose --minutes 10 --people 3 --write
```

`--write` replaces the section below.

### Figures

"""


def record_tracks(directory: Path, people: int, duration_ms: int) -> dict[str, Any]:
    """Every participant's video and sound, looped for `duration_ms`, sent as RTP
    packets through the recorder (sfu/recorder.py: video packets put back into
    pictures, then written); the CPU time it took and the packets and frames, by kind."""
    media: dict[Kind, tuple[list[bytes], int]] = {
        "video": (clip.encode_video(), VIDEO_FRAME_MS),
        "audio": (clip.encode_audio(), AUDIO_FRAME_MS),
    }
    packets = dict.fromkeys(media, 0)
    frames = dict.fromkeys(media, 0)
    cpu_seconds = dict.fromkeys(media, 0.0)
    for number in range(people):
        for kind, (encoded, interval_ms) in media.items():
            file = TrackFile(track_path(directory, f"p{number}", kind), kind)
            count, seconds = asyncio.run(
                _record(file, kind, _rtp(encoded, kind, interval_ms, duration_ms))
            )
            packets[kind] += count
            cpu_seconds[kind] += seconds
            frames[kind] += duration_ms // interval_ms
    everyone = [f"p{number}" for number in range(people)]
    timeline = Timeline(directory / TIMELINE)
    timeline.append({"t": 0, "recording": True, "video": everyone, "audio": everyone})
    timeline.append({"t": duration_ms, "end": True})
    per_frame = {kind: cpu_seconds[kind] / frames[kind] for kind in media}
    return {
        "packets": packets,
        "frames": frames,
        "us_per_packet": {kind: cpu_seconds[kind] / packets[kind] * 1e6 for kind in media},
        "us_per_frame": {kind: seconds * 1e6 for kind, seconds in per_frame.items()},
        # A track's share of a core: its cost per frame, times its frames a second.
        "core_share_per_track": {
            kind: seconds * 1000 / media[kind][1] for kind, seconds in per_frame.items()
        },
    }


def _rtp(
    encoded: list[bytes], kind: Kind, interval_ms: int, duration_ms: int
) -> Iterator[tuple[int, Received]]:
    """The looped clip as a publisher's packets, each with its arrival time in ms
    (made as they are sent: the composing figures include the process's peak memory)."""
    sequence_number = 0
    for number, arrival in enumerate(range(0, duration_ms, interval_ms)):
        frame = encoded[number % len(encoded)]
        payloads = Vp8Encoder._packetize(frame, number % 32768) if kind == "video" else [frame]
        timestamp = arrival * CLOCK_RATES[kind] // 1000
        for index, payload in enumerate(payloads):
            last = index == len(payloads) - 1
            seq, ts = sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF
            yield arrival, Received(last, 96, seq, ts, 1, payload)
            sequence_number += 1


async def _record(
    file: TrackFile, kind: Kind, sent: Iterator[tuple[int, Received]]
) -> tuple[int, float]:
    """Feed the packets to a track's recorder; how many there were, and the CPU time
    the recorder took (making the packets is not counted)."""
    now = count = 0
    seconds = 0.0
    recorder = TrackRecorder(file, kind, lambda: now, _failed)
    for now, packet in sent:  # noqa: B007 (the recorder reads `now` as its clock)
        began = time.process_time()
        recorder.forward(packet, keyframe=False, ntp=0)
        seconds += time.process_time() - began
        count += 1
    began = time.process_time()
    recorder.close()
    return count, seconds + time.process_time() - began


def _failed(reason: str) -> None:
    raise RuntimeError(reason)


def _show_progress(fraction: float) -> None:
    if round(fraction * 100) % 10 == 0:  # every tenth
        print(f"composing: {fraction:.0%}", file=sys.stderr, flush=True)


def time_compose(directory: Path) -> dict[str, Any]:
    """Compose the recording on one core; how long it took and what it made."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        began_wall, began_cpu = time.perf_counter(), time.process_time()
        composition = compose(directory, _show_progress)
        wall, cpu = time.perf_counter() - began_wall, time.process_time() - began_cpu
    finally:
        os.sched_setaffinity(0, cores)
    media_seconds = composition.duration_ms / 1000
    return {
        "media_seconds": media_seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "times_real_time": media_seconds / wall,
        "size_bytes": composition.size_bytes,
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def run(minutes: float, people: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as directory:
        writing = record_tracks(Path(directory), people, round(minutes * 60_000))
        composing = time_compose(Path(directory))
    return {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
        f" Linux {platform.release()}, Python {platform.python_version()}, PyAV {av.__version__}",
        "minutes": minutes,
        "people": people,
        "writing": writing,
        "composing": composing,
    }


def as_markdown(summary: dict[str, Any]) -> str:
    writing, composing = summary["writing"], summary["composing"]
    per_frame, share = writing["us_per_frame"], writing["core_share_per_track"]
    per_packet = writing["us_per_packet"]
    return "\n".join(
        [
            DOC_BEGIN,
            f"{summary['date']}, {summary['machine']}.",
            "",
            f"- Recording the tracks: {per_packet['video']:.1f} µs of CPU per video packet"
            f" ({per_frame['video']:.1f} µs per picture put together and written),"
            f" {per_packet['audio']:.1f} µs per audio packet: a recorded track takes"
            f" **{share['video']:.2%}** of a core (video, 25 fps) and"
            f" **{share['audio']:.2%}** (sound, 50 frames a second).",
            f"- Composing {summary['minutes']:g} minutes of {summary['people']}"
            f" {'person' if summary['people'] == 1 else 'people'}:"
            f" **{composing['wall_seconds']:.0f} s** ({composing['cpu_seconds']:.0f} s of CPU),"
            f" {composing['times_real_time']:.1f}x faster than real time;"
            f" {composing['size_bytes'] / 1e6:.1f} MB; peak memory"
            f" {composing['peak_memory_bytes'] / 2**20:.0f} MiB.",
            "",
            "```json",
            json.dumps(summary, indent=1),
            "```",
            DOC_END,
        ]
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.compose",
        description="The recorder's CPU per track, and the time to compose a conference.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="recorded (10)")
    parser.add_argument("--people", type=int, default=3, help="in the conference (3)")
    parser.add_argument(
        "--write", action="store_true", help="put the figures into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.people <= 16 or args.minutes <= 0:
        parser.error("--people: 1 to 16; --minutes: more than 0")

    text = as_markdown(run(args.minutes, args.people))
    print(text)
    if args.write:
        document = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"
        write_doc(document, text, DOC_BEGIN, DOC_END, introduction=INTRODUCTION)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
