"""The SFU under growing load: how many 640x480 videos one core forwards, and how
that compares with decoding and encoding each again (the transcoding baseline),
measured in the same run on the same machine.

For each forwarding (packets, then transcode), it starts the server in a process of
its own on 127.0.0.1, pinned to the first core (the participants run here, on the
others), then adds conferences step by step: each of --people headless
participants, every one sending a pre-encoded VP8 clip at 25 fps (about 800 kbit/s)
and Opus, and receiving everyone else without moderator mode, so a conference of N
forwards N x (N - 1) videos. The participants decode nothing: they count packets
as they arrive. After each step, over --seconds:

- the server's CPU (from /proc) and resident memory;
- video pictures expected (those the publishers sent, times their subscribers) and
  received: the loss;
- packets per second out of the server, as the participants received them;
- added latency: each video packet's payload is forwarded unchanged, so a
  subscriber matches it with the moment its publisher sent it (one clock, here);
- time from `join_media` to the first video packet, for each participant.

The CPU per forwarded video is the slope of CPU against videos (least squares), and
its inverse the videos per core. See docs/benchmarks.md, which --write updates.

    python -m clinicconf.bench.sfu [--people 6] [--steps 1,2,3] [--seconds 10] [--write]

Exits 0 whatever the figures; 1 when a step could not be brought up, or the run
overstayed --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import aiohttp
import aiortc
from aiortc import RTCRtpTransceiver

from ..config import Forwarding
from ..sfu import ice
from . import clip
from .participant import Participant
from .server import (
    SetupFailed,
    bench_settings,
    run_bounded,
    running_server,
    schedule_conferences,
    server_core,
)

EVERYONE_RECEIVES_SECONDS: Final = 30.0
# More lost than this, or later than this, and the server did not keep up: the step
# says so, but does not count towards the slope.
MAX_LOSS: Final = 0.01
MAX_LATENCY_P95_MS: Final = 100.0
WARM_UP_SECONDS: Final = 2.0
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
# A payload's last bytes tell it from the clip's others (each packet of the clip is
# different); a subscriber looks up when its publisher sent it.
_TAIL: Final = 24
_VP8 = re.compile(r"a=rtpmap:(\d+) VP8/90000")
DOC_BEGIN: Final = "<!-- bench-sfu: begin (written by python -m clinicconf.bench.sfu --write) -->"
DOC_END: Final = "<!-- bench-sfu: end -->"


class SendLog:
    """When each publisher sent each video payload, by its last bytes."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[bytes, float]] = {}
        self.frames: dict[str, int] = {}  # pictures sent, by publisher


class CountingParticipant(Participant):
    """Sends the clip; counts and times what it receives, decoding nothing."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, media: tuple[list[bytes], list[bytes]],
        log: SendLog, others: int,
    ) -> None:  # fmt: skip
        video, audio = media
        super().__init__(ws, clip.microphone(audio), clip.camera(video))
        self._log = log
        self._others = others
        self.video_frames = 0
        self.packets = 0
        self.latencies: list[float] = []
        self.joined_at = 0.0
        self.first_video: dict[str, float] = {}  # publisher -> seconds after joining
        self.receives_everyone = asyncio.Event()
        self._logging_sends = False

    def watch(
        self, mid: str, transceiver: RTCRtpTransceiver, offer_sdp: str
    ) -> asyncio.Task[None] | None:
        if not self._logging_sends:
            self._log_sends(offer_sdp)
        video_types = {int(pt) for pt in _VP8.findall(offer_sdp)}
        receiver = transceiver.receiver

        # What aiortc's receiver would depayload and decode is only counted here.
        async def count(packet: aiortc.rtp.RtpPacket, arrival_time_ms: int) -> None:
            now = time.monotonic()
            self.packets += 1
            entry = self.tracks.get(mid)
            if packet.payload_type not in video_types or entry is None or not packet.payload:
                return
            publisher = entry["participant"]
            self.video_frames += packet.marker  # a picture's last packet
            sent = self._log.sent.get(publisher, {}).get(packet.payload[-_TAIL:])
            if sent is not None:
                self.latencies.append(now - sent)
            if publisher not in self.first_video:
                self.first_video[publisher] = now - self.joined_at
                if len(self.first_video) == self._others:
                    self.receives_everyone.set()

        receiver._handle_rtp_packet = count  # type: ignore[method-assign]
        return None  # nothing is decoded, nothing to read

    def _log_sends(self, offer_sdp: str) -> None:
        """Note when each video packet leaves, before it is encrypted."""
        assert self.pc is not None
        self._logging_sends = True
        transport = self.pc.getTransceivers()[0].sender.transport
        send = transport._send_rtp
        video_types = {int(pt) for pt in _VP8.findall(offer_sdp)}
        sent = self._log.sent.setdefault(self.id, {})

        async def logged(data: bytes) -> None:
            if len(data) > 12 and data[1] & 0x7F in video_types:
                sent[data[-_TAIL:]] = time.monotonic()
                if data[1] & 0x80:  # the marker: a picture's last packet
                    self._log.frames[self.id] = self._log.frames.get(self.id, 0) + 1
            await send(data)

        transport._send_rtp = logged  # type: ignore[method-assign]


@dataclass
class Step:
    forwarding: Forwarding
    conferences: int
    people: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_bytes: int = 0
    video_expected: int = 0
    video_received: int = 0
    packets_received: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    join_ms: dict[str, float] = field(default_factory=dict)

    @property
    def videos(self) -> int:
        return self.conferences * self.people * (self.people - 1)

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def loss(self) -> float:
        return (
            max(0.0, 1 - self.video_received / self.video_expected) if self.video_expected else 1.0
        )

    @property
    def kept_up(self) -> bool:
        late = bool(self.latency_ms) and self.latency_ms["p95"] > MAX_LATENCY_P95_MS
        return self.loss < MAX_LOSS and not late

    @property
    def packets_per_second(self) -> float:
        return self.packets_received / self.seconds


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def nearest_rank(fraction: float) -> float:
        return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000, 2)

    return {"p50": nearest_rank(0.5), "p95": nearest_rank(0.95)}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _conference(
    session: aiohttp.ClientSession, links: tuple[str, str], people: int,
    media: tuple[list[bytes], list[bytes]], log: SendLog,
) -> list[CountingParticipant]:  # fmt: skip
    """The host on its link, guests on the public one; started, everyone in."""
    joined = []
    for number in range(people):
        url = links[0] if number == 0 else links[1]
        participant = CountingParticipant(await session.ws_connect(url), media, log, people - 1)
        joined.append(participant)
        await participant.hello(display_name=f"Person {number}")
    await joined[0].request("start")
    for participant in joined:
        participant.joined_at = time.monotonic()
        await participant.request("join_media")
    return joined


async def _measure_forwarding(
    forwarding: Forwarding, steps: list[int], people: int, seconds: float,
    media: tuple[list[bytes], list[bytes]],
) -> list[Step]:  # fmt: skip
    """One server; conferences added step by step, the load measured after each."""
    results: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir), forwarding)
        ice.install(settings)  # the participants' aiortc, on loopback too
        all_links = await schedule_conferences(settings, max(steps))
        log_path = Path(data_dir) / "server.log"
        everyone: list[CountingParticipant] = []
        log = SendLog()
        try:
            with server_core() as participants_elsewhere:
                async with (
                    running_server(settings, log_path) as server,
                    aiohttp.ClientSession() as session,
                ):
                    participants_elsewhere()
                    try:
                        for conferences in steps:
                            for links in all_links[len(everyone) // people : conferences]:
                                everyone += await _conference(session, links, people, media, log)
                            results.append(
                                await _measure(
                                    Step(forwarding, conferences, people), everyone, log,
                                    server.pid, seconds,
                                )
                            )  # fmt: skip
                            print(_row(results[-1]), flush=True)
                    finally:
                        for participant in everyone:
                            await participant.close()
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise
    return results


async def _measure(
    step: Step, everyone: list[CountingParticipant], log: SendLog, pid: int, seconds: float
) -> Step:
    try:
        async with asyncio.timeout(EVERYONE_RECEIVES_SECONDS):
            for participant in everyone:
                await participant.receives_everyone.wait()
    except TimeoutError:
        received = sorted(len(p.first_video) for p in everyone)
        raise SetupFailed(f"videos received, by participant: {received}") from None
    step.join_ms = _percentiles([t for p in everyone for t in p.first_video.values()])
    await asyncio.sleep(WARM_UP_SECONDS)
    sent_before = dict(log.frames)
    received_before = sum(p.video_frames for p in everyone)
    packets_before = sum(p.packets for p in everyone)
    for participant in everyone:
        participant.latencies.clear()
    cpu_before, began = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    step.seconds = time.monotonic() - began
    step.cpu_seconds = _cpu_seconds(pid) - cpu_before
    step.rss_bytes = _rss_bytes(pid)
    # Every picture a publisher sent goes to everyone else in its conference. (Pictures,
    # not packets: the transcoding baseline packetises its own encoding differently.)
    sent = sum(log.frames.get(p, 0) - sent_before.get(p, 0) for p in log.frames)
    step.video_expected = sent * (step.people - 1)
    step.video_received = sum(p.video_frames for p in everyone) - received_before
    step.packets_received = sum(p.packets for p in everyone) - packets_before
    step.latency_ms = _percentiles([t for p in everyone for t in p.latencies])
    return step


def slope(steps: list[Step]) -> float:
    """CPU (share of a core) per forwarded video, by least squares through the origin
    over the steps the server kept up with: past that, the CPU cannot grow any more."""
    kept_up = [s for s in steps if s.kept_up] or steps[:1]
    if len(kept_up) == 1:
        return kept_up[0].cpu_share / kept_up[0].videos
    xs, ys = [s.videos for s in kept_up], [s.cpu_share for s in kept_up]
    return statistics.linear_regression(xs, ys, proportional=True).slope


_HEADER: Final = (
    "| forwarding | conferences x people | videos | server CPU | pictures lost "
    "| packets/s out | latency p50 / p95 | join to first video p50 / p95 | memory |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _row(step: Step) -> str:
    def pair(figures: dict[str, float]) -> str:
        return f"{figures['p50']} / {figures['p95']} ms" if figures else "n/a"

    return (
        f"| {step.forwarding} | {step.conferences} x {step.people} | {step.videos} "
        f"| {step.cpu_share:.1%} | {step.loss:.2%} | {step.packets_per_second:,.0f} "
        f"| {pair(step.latency_ms)} | {pair(step.join_ms)} | {step.rss_bytes / 2**20:.0f} MiB |"
    )


def report(packets: list[Step], transcode: list[Step]) -> dict[str, Any]:
    forwarded, transcoded = slope(packets), slope(transcode)
    clean = [s.videos for s in packets if s.kept_up]
    return {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
        f" Linux {platform.release()}, Python {platform.python_version()},"
        f" aiortc {aiortc.__version__}",
        "cpu_per_video": {"packets": forwarded, "transcode": transcoded},
        "videos_per_core": {"packets": 1 / forwarded, "transcode": 1 / transcoded},
        "ratio": transcoded / forwarded,
        "most_videos_kept_up": max(clean, default=0),
        "steps": [asdict(s) | {"videos": s.videos, "loss": s.loss} for s in packets + transcode],
    }


def as_markdown(summary: dict[str, Any], packets: list[Step], transcode: list[Step]) -> str:
    per_video, per_core = summary["cpu_per_video"], summary["videos_per_core"]
    return "\n".join(
        [
            DOC_BEGIN,
            f"{summary['date']}, {summary['machine']}; the server on one core.",
            "",
            _HEADER,
            *(_row(s) for s in packets + transcode),
            "",
            f"- CPU per forwarded video (slope): packets {per_video['packets']:.2%} of a core,"
            f" transcode {per_video['transcode']:.2%}.",
            f"- Forwarded videos per core: **{per_core['packets']:.0f}** (packets) against"
            f" **{per_core['transcode']:.1f}** (transcode): **{summary['ratio']:.0f}x**.",
            f"- Most videos measured while the server kept up (under 1% of pictures lost,"
            f" latency p95 under {MAX_LATENCY_P95_MS:.0f} ms): {summary['most_videos_kept_up']}.",
            "",
            "```json",
            json.dumps(summary, indent=1),
            "```",
            DOC_END,
        ]
    )


def write_doc(
    path: Path, text: str, begin: str = DOC_BEGIN, end: str = DOC_END, introduction: str = ""
) -> None:
    """Replace the section of docs/benchmarks.md between `begin` and `end`; when it is
    not there yet, add it at the end, after `introduction`."""
    document = path.read_text(encoding="utf-8")
    if begin in document and end in document:
        before, rest = document.split(begin, 1)
        after = rest.split(end, 1)[1]
        document = before + text + after
    else:
        document = document.rstrip("\n") + "\n\n" + introduction + text + "\n"
    path.write_text(document, encoding="utf-8")


async def run(
    people: int, steps: list[int], seconds: float, baseline_people: int
) -> tuple[list[Step], list[Step]]:
    media = (clip.encode_video(), clip.encode_audio())
    print(_HEADER, flush=True)
    packets = await _measure_forwarding("packets", steps, people, seconds, media)
    transcode = await _measure_forwarding("transcode", [1], baseline_people, seconds, media)
    return packets, transcode


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.sfu",
        description="Forwarded videos per core, against the transcoding baseline.",
    )
    parser.add_argument("--people", type=int, default=6, help="per conference (6)")
    parser.add_argument(
        "--steps", default="1,2,3", help="conferences held at each step, growing (1,2,3)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per step (10 s)")
    parser.add_argument(
        "--baseline-people", type=int, default=2, help="the transcoding conference's (2)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="for the whole run (600 s)")
    parser.add_argument(
        "--write", action="store_true", help="put the figures into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    steps = [int(n) for n in args.steps.split(",")]
    if not 2 <= args.people <= 16 or not 2 <= args.baseline_people <= 16:
        parser.error("--people and --baseline-people: 2 to 16")
    if steps != sorted(set(steps)) or steps[0] < 1:
        parser.error("--steps: growing numbers of conferences, such as 1,2,4")

    measured = run_bounded(
        lambda: run(args.people, steps, args.seconds, args.baseline_people), args.timeout
    )
    if measured is None:
        return 1
    packets, transcode = measured
    summary = report(packets, transcode)
    text = as_markdown(summary, packets, transcode)
    print(text)
    if args.write:
        write_doc(Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
