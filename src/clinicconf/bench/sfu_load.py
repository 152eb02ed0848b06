"""The SFU benchmark's load (bench/sfu.py says what it measures): a fresh server for
each conference size, the baseline and the burst; conferences of counting
participants added step by step, and what each step measured (`Step`), printed as a
row of the table as it goes; the burst's first pictures (`Burst`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from ..config import Forwarding
from ..sfu import ice
from . import clip, measures
from .counting import EVERYONE_RECEIVES_SECONDS, CountingParticipant, SendLog
from .server import (
    SetupFailed,
    as_client,
    bench_settings,
    running_server,
    schedule_conferences,
    server_core,
)

# More lost than this, or later than this, and the server did not keep up: the step
# says so, but does not count towards the slope.
MAX_LOSS: Final = 0.01
MAX_LATENCY_P95_MS: Final = 100.0
WARM_UP_SECONDS: Final = 2.0
# How often the load's own lag is probed.
LAG_PROBE_SECONDS: Final = 0.01
# Participants closed at once at the end of a size.
CLOSING_AT_ONCE: Final = 20


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
    # From each newcomer's own join_media to each publisher's first video packet.
    join_ms: dict[str, float] = field(default_factory=dict)
    # From the later of the newcomer's and the publisher's join_media.
    first_picture_ms: dict[str, float] = field(default_factory=dict)
    load_cpu_seconds: float = 0.0
    load_lag_ms: dict[str, float] = field(default_factory=dict)
    load_late_ticks: int = 0

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

    @property
    def packets_per_core(self) -> float:
        return self.packets_per_second / self.cpu_share if self.cpu_seconds else 0.0

    @property
    def load_cpu(self) -> float:
        return self.load_cpu_seconds / self.seconds

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "videos": self.videos,
            "loss": self.loss,
            "packets_per_second": self.packets_per_second,
            "packets_per_core": self.packets_per_core,
            "load_cpu": self.load_cpu,
        }


@dataclass
class Burst:
    """Conferences joining media at once, on a fresh server: the first picture of
    each (participant, publisher) pair."""

    people: int
    conferences: int
    pairs: int = 0
    pictured: int = 0  # pairs with a first picture within EVERYONE_RECEIVES_SECONDS
    first_picture_ms: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # the server's, from the joins to the last first picture
    seconds: float = 0.0

    @property
    def participants(self) -> int:
        return self.people * self.conferences


async def _lags(seconds: float) -> list[float]:
    """For `seconds`, how late this process's event loop runs a callback that was due
    (LAG_PROBE_SECONDS apart): a load that falls behind delays what it receives, and
    that would read as the server's latency."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    end = loop.time() + seconds
    while (due := loop.time() + LAG_PROBE_SECONDS) < end:
        await asyncio.sleep(LAG_PROBE_SECONDS)
        lags.append(max(0.0, loop.time() - due))
    await asyncio.sleep(max(0.0, end - loop.time()))
    return lags


def _first_pictures(participants: list[CountingParticipant], log: SendLog) -> list[float]:
    """Seconds from the later of the two join_media to each publisher's first video
    packet, for each of `participants`."""
    return [
        arrival - max(p.joined_at, log.joined.get(publisher, p.joined_at))
        for p in participants
        for publisher, arrival in p.first_arrival.items()
    ]


class Load:
    """The participants of one server, joined conference by conference."""

    def __init__(self, session: aiohttp.ClientSession, media: clip.Packets, log: SendLog) -> None:
        self._session = session
        self._media = media
        self.log = log
        self.everyone: list[CountingParticipant] = []

    async def greet(self, links: tuple[str, str], people: int) -> list[CountingParticipant]:
        """The host on its link, guests on the public one (each as a client of its
        own), in the lobby; the conference started."""
        greeted = []
        for number in range(people):
            url = links[0] if number == 0 else links[1]
            async with _setting_up(f"hello, person {number}"):
                ws = await self._session.ws_connect(url, headers=as_client(len(self.everyone)))
                participant = CountingParticipant(ws, self._media, self.log, people - 1)
                self.everyone.append(participant)
                greeted.append(participant)
                await participant.hello(display_name=f"Person {number}")
        async with _setting_up("start"):
            _answered(await greeted[0].request("start"), "start")
        return greeted

    async def join_media(self, participant: CountingParticipant) -> None:
        participant.joined_at = self.log.joined[participant.id] = time.monotonic()
        async with _setting_up("join_media"):
            _answered(await participant.request("join_media"), "join_media")

    async def close(self) -> None:
        for at in range(0, len(self.everyone), CLOSING_AT_ONCE):
            await asyncio.gather(*(p.close() for p in self.everyone[at : at + CLOSING_AT_ONCE]))
        self.everyone = []


@contextlib.asynccontextmanager
async def _setting_up(what: str) -> AsyncIterator[None]:
    """A step of the set-up the server did not answer (in time) could not be brought up."""
    try:
        yield
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SetupFailed(f"{what}: {type(exc).__name__} {exc}".rstrip()) from exc


def _answered(answer: dict[str, Any], what: str) -> None:
    if answer.get("type") != "result":
        raise SetupFailed(f"{what}: {answer.get('code', answer.get('type'))}")


async def _receives_everyone(participants: list[CountingParticipant]) -> bool:
    """Wait until each of them receives a video from everyone else (False: not within
    EVERYONE_RECEIVES_SECONDS)."""
    try:
        async with asyncio.timeout(EVERYONE_RECEIVES_SECONDS):
            for participant in participants:
                await participant.receives_everyone.wait()
    except TimeoutError:
        return False
    return True


async def _on_fresh_server(
    forwarding: Forwarding, conferences: int, media: clip.Packets,
    measure: Callable[[Load, list[tuple[str, str]], int], Any],
) -> Any:  # fmt: skip
    """A server of its own, with `conferences` scheduled, pinned to the first core
    while this process goes on on the others; `measure(load, links, pid)` with it."""
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir), forwarding)
        ice.install(settings)  # the participants' aiortc, on loopback too
        links = await schedule_conferences(settings, conferences)
        log_path = Path(data_dir) / "server.log"
        try:
            with server_core() as load_elsewhere:
                async with (
                    running_server(settings, log_path) as server,
                    aiohttp.ClientSession() as session,
                ):
                    load_elsewhere()
                    load = Load(session, media, SendLog())
                    try:
                        return await measure(load, links, server.pid)
                    finally:
                        await load.close()
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise


async def _measure_size(
    forwarding: Forwarding, people: int, steps: list[int], seconds: float,
    media: clip.Packets, results: list[Step],
) -> None:  # fmt: skip
    """One server; conferences of `people` added step by step, the load measured
    after each, into `results` (those measured stay when a later step fails)."""

    async def measure(load: Load, links: list[tuple[str, str]], pid: int) -> None:
        held = 0
        for conferences in steps:
            newcomers = []
            for conference in links[held:conferences]:
                greeted = await load.greet(conference, people)
                for participant in greeted:
                    await load.join_media(participant)
                newcomers += greeted
            held = conferences
            step = Step(forwarding, conferences, people)
            results.append(await _measure(step, load, newcomers, pid, seconds))
            print(row(results[-1]), flush=True)

    await _on_fresh_server(forwarding, max(steps), media, measure)


async def _measure(
    step: Step, load: Load, newcomers: list[CountingParticipant], pid: int, seconds: float
) -> Step:
    everyone, log = load.everyone, load.log
    if not await _receives_everyone(everyone):
        received = sorted(len(p.first_video) for p in everyone)
        raise SetupFailed(f"videos received, by participant: {received}")
    step.join_ms = measures.percentiles([t for p in newcomers for t in p.first_video.values()])
    step.first_picture_ms = measures.percentiles(_first_pictures(newcomers, log))
    await asyncio.sleep(WARM_UP_SECONDS)
    sent_before = dict(log.frames)
    received_before = sum(p.video_frames for p in everyone)
    packets_before = sum(p.packets for p in everyone)
    late_before = sum(p.late_ticks for p in everyone)
    for participant in everyone:
        participant.latencies.clear()
    cpu_before, load_before = measures.cpu_seconds(pid), measures.own_cpu_seconds()
    began = time.monotonic()
    step.load_lag_ms = measures.percentiles(await _lags(seconds))
    step.seconds = time.monotonic() - began
    step.cpu_seconds = measures.cpu_seconds(pid) - cpu_before
    step.load_cpu_seconds = measures.own_cpu_seconds() - load_before
    step.rss_bytes = measures.rss_bytes(pid)
    # Every picture a publisher sent goes to everyone else in its conference. (Pictures,
    # not packets: the transcoding baseline packetises its own encoding differently.)
    sent = sum(log.frames.get(p, 0) - sent_before.get(p, 0) for p in log.frames)
    step.video_expected = sent * (step.people - 1)
    step.video_received = sum(p.video_frames for p in everyone) - received_before
    step.packets_received = sum(p.packets for p in everyone) - packets_before
    step.load_late_ticks = sum(p.late_ticks for p in everyone) - late_before
    step.latency_ms = measures.percentiles([t for p in everyone for t in p.latencies])
    return step


async def _measure_burst(people: int, conferences: int, media: clip.Packets) -> Burst:
    """`conferences` of `people` greeted and started, then everyone's join_media sent
    at once."""

    async def measure(load: Load, links: list[tuple[str, str]], pid: int) -> Burst:
        burst = Burst(people, conferences)
        everyone = [p for conference in links for p in await load.greet(conference, people)]
        cpu_before, began = measures.cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(load.join_media(p) for p in everyone))
        await _receives_everyone(everyone)
        burst.seconds = time.monotonic() - began
        burst.cpu_seconds = measures.cpu_seconds(pid) - cpu_before
        burst.pairs = len(everyone) * (people - 1)
        pictured = _first_pictures(everyone, load.log)
        burst.pictured = len(pictured)
        missing = [EVERYONE_RECEIVES_SECONDS] * (burst.pairs - burst.pictured)
        burst.first_picture_ms = measures.percentiles(pictured + missing)
        return burst

    measured: Burst = await _on_fresh_server("packets", conferences, media, measure)
    return measured


HEADER: Final = (
    "| forwarding | conferences x people | videos | packets/s out | server CPU "
    "| packets/s per core | pictures lost | latency p50 / p95 | first picture p50 / p95 "
    "| memory | load CPU |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def pair(figures: dict[str, float]) -> str:
    return f"{figures['p50']:g} / {figures['p95']:g} ms" if figures else "n/a"


def row(step: Step) -> str:
    lag = step.load_lag_ms.get("p95")
    late = "" if lag is None else f", lag p95 {lag:g} ms"
    late += f", {step.load_late_ticks} ticks missed" if step.load_late_ticks else ""
    return (
        f"| {step.forwarding} | {step.conferences} x {step.people} | {step.videos} "
        f"| {step.packets_per_second:,.0f} | {step.cpu_share:.1%} "
        f"| {step.packets_per_core:,.0f} | {step.loss:.2%} | {pair(step.latency_ms)} "
        f"| {pair(step.first_picture_ms)} | {step.rss_bytes / 2**20:.0f} MiB "
        f"| {step.load_cpu:.0%}{late} |"
    )


@dataclass
class Run:
    """What was measured, and what could not be brought up."""

    sizes: dict[int, list[Step]] = field(default_factory=dict)
    transcode: list[Step] = field(default_factory=list)
    burst: Burst | None = None
    failures: list[str] = field(default_factory=list)


async def run(
    sizes: dict[int, list[int]], seconds: float, baseline_people: int, burst: tuple[int, int]
) -> Run:
    """Every size, the baseline and the burst, each on a server of its own; one that
    cannot be brought up is noted, and the others go on."""
    media = clip.encode_packets()
    print(HEADER, flush=True)
    result = Run()
    for people, steps in sizes.items():
        measured = result.sizes[people] = []
        try:
            await _measure_size("packets", people, steps, seconds, media, measured)
        except SetupFailed as exc:
            result.failures.append(f"{people} people, after {len(measured)} steps: {exc}")
    try:
        await _measure_size("transcode", baseline_people, [1], seconds, media, result.transcode)
    except SetupFailed as exc:
        result.failures.append(f"transcoding baseline: {exc}")
    try:
        result.burst = await _measure_burst(*burst, media)
        print(f"burst: {result.burst.participants} joining at once, first picture"
              f" {pair(result.burst.first_picture_ms)}", flush=True)  # fmt: skip
    except SetupFailed as exc:
        result.failures.append(f"burst: {exc}")
    for failure in result.failures:
        print(f"could not be brought up: {failure}", file=sys.stderr, flush=True)
    return result
