"""The server's CPU for a conference: N people, each sending 640x480 VP8 at 25 fps
and Opus (pre-encoded: see clip.py) and receiving everyone else, without moderator
mode, so that the server forwards N x (N - 1) videos and as many sounds.

Starts the server in a process of its own on 127.0.0.1 (pinned to the first core
when there are two; the participants run here, on the others), brings everyone in
through the conference's websocket as the page does, waits until everyone receives
everyone, then reads the server's CPU time and memory from /proc over --seconds.
See docs/benchmarks.md.

    python -m clinicconf.bench.conference [--people 3] [--seconds 20]

Exits 0 whatever the figures; 1 when the conference could not be brought up, or the
run overstayed --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import av

from ..sfu import ice
from . import clip
from .participant import Participant
from .server import SetupFailed, bench_settings, run_bounded, running_server, schedule_conference

EVERYONE_RECEIVES_SECONDS: Final = 30.0
# After everyone receives everyone: encoders settle, bitrates ramp up.
WARM_UP_SECONDS: Final = 3.0
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


class CountingParticipant(Participant):
    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, video: list[bytes], audio: list[bytes],
        others: int,
    ) -> None:  # fmt: skip
        super().__init__(ws, clip.microphone(audio), clip.camera(video))
        self.frames: Counter[str] = Counter()  # video frames received, by publisher
        self._others = others
        self.receives_everyone = asyncio.Event()

    def received(self, publisher: str | None, frame: av.AudioFrame | av.VideoFrame) -> None:
        if isinstance(frame, av.VideoFrame) and publisher is not None:
            self.frames[publisher] += 1
            if len(self.frames) == self._others:
                self.receives_everyone.set()


@dataclass(frozen=True)
class Measurement:
    people: int
    seconds: float
    cpu_seconds: float
    rss_bytes: int
    frames_received: int

    @property
    def videos(self) -> int:
        return self.people * (self.people - 1)

    @property
    def cpu_share(self) -> float:
        """Of one core."""
        return self.cpu_seconds / self.seconds

    @property
    def frames_per_second(self) -> float:
        """Per forwarded video, as the subscribers received them."""
        return self.frames_received / self.videos / self.seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])  # utime, stime
    return (user + system) / _CLOCK_TICKS


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def _server_core() -> Iterator[Callable[[], None]]:
    """While inside, this process runs on the first core only, so that the server it
    starts (every thread of it) inherits that; calling what it yields moves this
    process to the other cores. Nothing is pinned on a single-core machine."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield lambda: None
        return
    os.sched_setaffinity(0, {cores[0]})
    try:
        yield lambda: os.sched_setaffinity(0, set(cores[1:]))
    finally:
        os.sched_setaffinity(0, set(cores))


async def _everyone_receives_everyone(people: list[CountingParticipant]) -> None:
    try:
        async with asyncio.timeout(EVERYONE_RECEIVES_SECONDS):
            for participant in people:
                await participant.receives_everyone.wait()
    except TimeoutError:
        received = [len(p.frames) for p in people]
        raise SetupFailed(f"videos received, by participant: {received}") from None


async def measure(people: int, seconds: float) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir))
        ice.install(settings)  # the participants' aiortc, on loopback too
        links = await schedule_conference(settings)
        log_path = Path(data_dir) / "server.log"
        try:
            with _server_core() as participants_elsewhere:
                async with (
                    running_server(settings, log_path) as server,
                    aiohttp.ClientSession() as session,
                ):
                    participants_elsewhere()
                    return await _hold_conference(session, links, server.pid, people, seconds)
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise


async def _hold_conference(
    session: aiohttp.ClientSession, links: tuple[str, str], server_pid: int, people: int,
    seconds: float,
) -> Measurement:  # fmt: skip
    """The host on the first link, guests on the public one; everyone in, then measured."""
    video, audio = clip.encode_video(), clip.encode_audio()
    joined: list[CountingParticipant] = []
    try:
        for number in range(people):
            url = links[0] if number == 0 else links[1]
            participant = CountingParticipant(
                await session.ws_connect(url), video, audio, people - 1
            )
            joined.append(participant)
            await participant.hello(display_name=f"Person {number}")
        await joined[0].request("start")
        for participant in joined:
            await participant.request("join_media")
        await _everyone_receives_everyone(joined)
        await asyncio.sleep(WARM_UP_SECONDS)
        frames_before = sum(sum(p.frames.values()) for p in joined)
        cpu_before, began = _cpu_seconds(server_pid), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - began
        return Measurement(
            people,
            elapsed,
            _cpu_seconds(server_pid) - cpu_before,
            _rss_bytes(server_pid),
            sum(sum(p.frames.values()) for p in joined) - frames_before,
        )
    finally:
        for participant in joined:
            await participant.close()


def report(measurement: Measurement) -> str:
    m = measurement
    return "\n".join(
        [
            f"people: {m.people}, forwarded videos: {m.videos}, over {m.seconds:.1f} s",
            f"server CPU: {m.cpu_share:.1%} of one core"
            f" ({m.cpu_share / m.videos:.1%} per forwarded video)",
            f"video received: {m.frames_per_second:.1f} frames/s per forwarded video"
            f" (sent at {clip.FRAMES_PER_SECOND})",
            f"server memory: {m.rss_bytes / 2**20:.0f} MiB resident",
        ]
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.conference",
        description="The server's CPU for a conference of N people.",
    )
    parser.add_argument("--people", type=int, default=3, help="participants (3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured (20 s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="for the whole run (180 s)")
    args = parser.parse_args(argv)
    if not 2 <= args.people <= 16:
        parser.error("--people: 2 to 16")

    measurement = run_bounded(lambda: measure(args.people, args.seconds), args.timeout)
    if measurement is None:
        return 1
    print(report(measurement))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
