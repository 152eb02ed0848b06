"""Load and soak: the server holding a clinic's busy hour for minutes on end, and
whether its memory keeps growing.

In a fresh data directory it schedules --conferences Public Conferences and, for the
idle pages, as many more as it takes at PAGES_PER_LOBBY pages each; starts the server
in a process of its own on 127.0.0.1 (media on loopback too), pinned to the first
core while this load process runs on the others; opens --idle-pages
landing pages on the public links of the extra conferences (each says hello, then only
reads what it is sent, as an unattended browser tab does); then brings up each
conference as bench/sfu.py does: the host on its link, --people - 1 guests on the
public link, the conference started, everyone in media, each sending a pre-encoded
640x480 VP8 clip at 25 fps and Opus, and counting the pictures it receives without
decoding them. Once everyone receives everyone (or EVERYONE_RECEIVES_SECONDS have
passed), it holds all of that for --minutes and every --sample-seconds notes:

- the server process's resident memory (VmRSS), its CPU over the interval (share of
  one core, from utime + stime) and its open file descriptors, all from /proc;
- pictures received per second (all participants), and the share of those sent
  that did not arrive; the 95th percentile of the time from a publisher sending a
  video packet to a subscriber receiving it;
- participants whose media has stopped (no packet for STALL_SECONDS, checked every
  second), and the idle pages still open;
- the machine's load average; this (load) process's own CPU; and for both processes
  the share of the interval their threads were ready to run but waited for a core
  (/proc/<pid>/task/*/schedstat), which tells a server that falls behind from a
  machine too busy to run it.

At the end: memory after warm-up (the first WARM_UP_SECONDS, at most half the hold,
are left out): its least-squares slope in MiB per 10 minutes, and max - min; the
server's CPU, mean and p95; and everything lost: pages the server closed,
participants without media, media stalls, failed joins, pictures lost, errors in
the server's log. The verdict "memory does not grow after warm-up" is printed only
when the slope is within noise: under twice its standard error (growth the samples
cannot tell from allocator jitter) or under GROWTH_FLOOR_MIB MiB per 10 minutes
(too little to matter over a clinic's day), whichever is larger; and it says so when
something was lost, as flat memory says little about a load that fell away.

    python -m clinicconf.bench.soak [--conferences 5] [--people 3] [--idle-pages 300]
        [--minutes 10] [--sample-seconds 10] [--write]

--write puts the figures in docs/reliability.md. Exits 0 whatever the figures; 1
when the server could not be brought up, or the run overstayed its time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final, TypeVar

import aiohttp
import aiortc

from ..sfu import ice
from . import clip, measures
from .counting import EVERYONE_RECEIVES_SECONDS, CountingParticipant, SendLog
from .lobby import CONNECTING_AT_ONCE, PAGE_OPEN_SECONDS
from .measures import write_doc
from .server import (
    SetupFailed,
    as_client,
    bench_settings,
    run_bounded,
    running_server,
    schedule_conferences,
    server_core,
)

Answer = TypeVar("Answer")

STALL_SECONDS: Final = 3.0
STALL_CHECK_SECONDS: Final = 1.0
WARM_UP_SECONDS: Final = 120.0
# Far under the 500 pages a conference admits; several lobbies, as on a busy day.
PAGES_PER_LOBBY: Final = 100
GROWTH_FLOOR_MIB: Final = 1.0  # per 10 minutes: under 50 MiB over an 8-hour day
# Bringing everything up and taking it down, on top of --minutes.
SETUP_SECONDS: Final = 240.0
TEARDOWN_SECONDS: Final = 60.0
_MIB: Final = 2**20
_SERVER_ERROR = re.compile(r"^\d{4}-\d\d-\d\d \S+ (ERROR|CRITICAL) ", re.MULTILINE)
DOC_PATH: Final = Path(__file__).resolve().parents[3] / "docs" / "reliability.md"
DOC_BEGIN: Final = "<!-- bench-soak: begin (written by python -m clinicconf.bench.soak --write) -->"
DOC_END: Final = "<!-- bench-soak: end -->"
DOC_INTRODUCTION: Final = (
    "## Load and soak\n\nWritten by `python -m clinicconf.bench.soak --write`"
    " (src/clinicconf/bench/soak.py says how it measures).\n\n"
)


class IdlePage:
    """A landing page that said hello and stays: it reads whatever it is sent (the
    server closes a page that does not, as too slow) and notes how its socket ended."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.closed_with: int | None = None
        self._reader = asyncio.create_task(self._read(), name="soak-idle-page")

    @property
    def open(self) -> bool:
        return not self._reader.done()

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
        self.closed_with = self._ws.close_code

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._ws.close()


async def open_page(
    session: aiohttp.ClientSession, url: str, name: str, client: int
) -> IdlePage | str:
    """The page of the `client`th client of the load, once welcomed; otherwise why not."""
    ws: aiohttp.ClientWebSocketResponse | None = None
    hello = {"v": 1, "id": 1, "type": "hello", "client_key": secrets.token_urlsafe(16)}
    try:
        async with asyncio.timeout(PAGE_OPEN_SECONDS):
            ws = await session.ws_connect(url, headers=as_client(client))
            await ws.send_json(hello | {"display_name": name})
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT and json.loads(frame.data)["type"] == (
                    "welcome"
                ):
                    return IdlePage(ws)
            return f"page closed by the server with {ws.close_code}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        if ws is not None:
            await ws.close()
        return f"page not opened: {type(exc).__name__}"


class Conference:
    """One conference's participants in media, joined as bench/sfu.py joins them, but a
    join that fails is noted and the others go on: a soak counts what it loses."""

    def __init__(self) -> None:
        self.members: list[CountingParticipant] = []
        self.failures: list[str] = []

    async def join(
        self, session: aiohttp.ClientSession, links: tuple[str, str], people: int,
        media: tuple[list[bytes], list[bytes]], log: SendLog,
    ) -> None:  # fmt: skip
        """The host on its link, guests on the public one; started, everyone in."""
        greeted = []
        for number in range(people):
            url = links[0] if number == 0 else links[1]
            participant = await self._step(
                f"hello, person {number}",
                self._hello(session, url, f"Person {number}", media, log, people - 1),
            )
            if participant is not None:
                greeted.append(participant)
        self.members = greeted
        if not (greeted and greeted[0].welcome["you"]["host"]):
            self.failures.append("start: no host")
            return
        if await self._step("start", greeted[0].request("start")) is None:
            return  # everyone stays in the lobby, without media
        for participant in greeted:
            participant.joined_at = time.monotonic()
            await self._step("join_media", participant.request("join_media"))

    async def _hello(
        self, session: aiohttp.ClientSession, url: str, name: str,
        media: tuple[list[bytes], list[bytes]], log: SendLog, others: int,
    ) -> CountingParticipant:  # fmt: skip
        participant = CountingParticipant(await session.ws_connect(url), media, log, others)
        try:
            await participant.hello(display_name=name)
        except BaseException:
            await participant.close()
            raise
        return participant

    async def _step(self, what: str, step: Awaitable[Answer]) -> Answer | None:
        """What the step gives, or None when it failed or was refused (noted)."""
        try:
            answer = await step
        except (aiohttp.ClientError, OSError, TimeoutError, TypeError) as exc:
            # (TypeError: the server closed the socket instead of answering.)
            self.failures.append(f"{what}: {type(exc).__name__}")
            return None
        if isinstance(answer, dict) and answer.get("type") == "error":
            self.failures.append(f"{what}: {answer['code']}")
            return None
        return answer

    @property
    def receiving(self) -> list[CountingParticipant]:
        """Those receiving a video from everyone else in the conference."""
        return [p for p in self.members if len(p.first_video) >= len(self.members) - 1]

    def pictures_expected(self, sent: dict[str, int]) -> int:
        """Each picture a member sent goes to every other member."""
        return sum(sent.get(p.id, 0) for p in self.members) * (len(self.members) - 1)


class MediaWatch:
    """Notes, every STALL_CHECK_SECONDS, when each participant last received a packet:
    STALL_SECONDS without one is a stall, counted once until packets come again."""

    def __init__(self, participants: list[CountingParticipant]) -> None:
        self._participants = participants
        now = time.monotonic()
        self._seen = [(p.packets, now) for p in participants]
        self.stalled = [False] * len(participants)
        self.stalls = [0] * len(participants)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STALL_CHECK_SECONDS)
            now = time.monotonic()
            for index, participant in enumerate(self._participants):
                packets, since = self._seen[index]
                if participant.packets != packets:
                    self._seen[index] = (participant.packets, now)
                    self.stalled[index] = False
                elif now - since >= STALL_SECONDS and not self.stalled[index]:
                    self.stalled[index] = True
                    self.stalls[index] += 1


@dataclass
class Sample:
    at: float  # seconds into the hold
    rss_bytes: int
    cpu_share: float
    cpu_wait_share: float
    fds: int
    pictures_per_second: float
    pictures_lost: float
    latency_p95_ms: float | None
    stalled: int
    pages_open: int
    load_average: float
    load_cpu_share: float
    load_cpu_wait_share: float


@dataclass
class Soak:
    """What was held, what was measured while holding it, and what was lost."""

    options: argparse.Namespace
    conferences: list[Conference]
    pages: list[IdlePage]
    page_failures: list[str]
    samples: list[Sample] = field(default_factory=list)
    stalls: list[int] = field(default_factory=list)
    without_media_at_end: int = 0
    pages_closed: Counter[int | None] = field(default_factory=Counter)
    pictures_expected: int = 0
    pictures_received: int = 0
    server_errors: int = 0

    @property
    def participants(self) -> list[CountingParticipant]:
        return [p for c in self.conferences for p in c.members]


async def soak(options: argparse.Namespace) -> Soak:
    media = (clip.encode_video(), clip.encode_audio())
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir))
        ice.install(settings)  # the participants' aiortc, on loopback too
        lobbies = math.ceil(options.idle_pages / PAGES_PER_LOBBY)
        links = await schedule_conferences(settings, options.conferences + lobbies)
        log_path = Path(data_dir) / "server.log"
        try:
            with server_core() as load_elsewhere:
                async with (
                    running_server(settings, log_path) as server,
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
                ):
                    load_elsewhere()
                    result = Soak(
                        options, [Conference() for _ in range(options.conferences)], [], []
                    )
                    try:
                        await _open_pages(session, links[options.conferences :], result)
                        log = SendLog()
                        held = links[: options.conferences]
                        for conference, conference_links in zip(
                            result.conferences, held, strict=True
                        ):
                            await conference.join(
                                session, conference_links, options.people, media, log
                            )
                        await _hold(result, log, server.pid)
                    finally:
                        for participant in result.participants:
                            await participant.close()
                        await asyncio.gather(*(page.close() for page in result.pages))
            result.server_errors = len(_SERVER_ERROR.findall(log_path.read_text(errors="replace")))
            return result
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise


async def _open_pages(
    session: aiohttp.ClientSession, lobbies: list[tuple[str, str]], result: Soak
) -> None:
    """The idle pages, spread over the lobbies' public links, CONNECTING_AT_ONCE at a time."""
    slots = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def open_one(number: int) -> IdlePage | str:
        async with slots:
            _, public_link = lobbies[number % len(lobbies)]
            return await open_page(session, public_link, f"Waiting {number}", number)

    opened = await asyncio.gather(*(open_one(n) for n in range(result.options.idle_pages)))
    result.pages = [page for page in opened if isinstance(page, IdlePage)]
    result.page_failures = [reason for reason in opened if isinstance(reason, str)]
    print(f"{len(result.pages)} of {result.options.idle_pages} idle pages open", flush=True)


async def _hold(result: Soak, log: SendLog, pid: int) -> None:
    """Wait until everyone receives everyone (or give up on those who do not), then
    sample every --sample-seconds for --minutes."""
    options = result.options
    deadline = time.monotonic() + EVERYONE_RECEIVES_SECONDS
    # Polled, not awaited on each participant's event: after a failed join, "everyone"
    # is fewer people than CountingParticipant waits for.
    while time.monotonic() < deadline and any(  # noqa: ASYNC110
        len(c.receiving) < len(c.members) for c in result.conferences
    ):
        await asyncio.sleep(0.5)
    receiving = [p for c in result.conferences for p in c.receiving]
    print(f"{len(receiving)} of {len(result.participants)} participants in media", flush=True)
    print(HEADER, flush=True)

    for participant in result.participants:
        participant.latencies.clear()  # those of the set-up are not the hold's
    watch = MediaWatch(receiving)
    watching = asyncio.create_task(watch.run(), name="soak-media-watch")
    began = time.monotonic()
    previous = _Counters.read(result, log, pid)
    first = previous
    try:
        interval = options.sample_seconds
        for number in range(1, math.floor(options.minutes * 60 / interval) + 1):
            await asyncio.sleep(max(0.0, began + number * interval - time.monotonic()))
            current = _Counters.read(result, log, pid)
            sample = current.since(previous, result, pid, began, sum(watch.stalled))
            result.samples.append(sample)
            print(row(sample), flush=True)
            previous = current
    finally:
        watching.cancel()
    result.stalls, result.without_media_at_end = watch.stalls, sum(watch.stalled)
    result.without_media_at_end += len(result.participants) - len(receiving)
    result.pages_closed = Counter(page.closed_with for page in result.pages if not page.open)
    result.pictures_expected = previous.expected - first.expected
    result.pictures_received = previous.received - first.received


@dataclass
class _Counters:
    """Running totals read at one moment; a sample is the difference of two."""

    at: float
    server_cpu: float
    server_wait: float
    load_cpu: float
    load_wait: float
    expected: int
    received: int

    @classmethod
    def read(cls, result: Soak, log: SendLog, pid: int) -> _Counters:
        sent = dict(log.frames)
        return cls(
            time.monotonic(), measures.cpu_seconds(pid), measures.cpu_wait_seconds(pid),
            measures.cpu_seconds(os.getpid()), measures.cpu_wait_seconds(os.getpid()),
            sum(c.pictures_expected(sent) for c in result.conferences),
            sum(p.video_frames for p in result.participants),
        )  # fmt: skip

    def since(
        self, before: _Counters, result: Soak, pid: int, began: float, stalled: int
    ) -> Sample:
        seconds = self.at - before.at
        expected, received = self.expected - before.expected, self.received - before.received
        latencies = [t for p in result.participants for t in p.latencies]
        for participant in result.participants:
            participant.latencies.clear()
        return Sample(
            at=self.at - began,
            rss_bytes=measures.rss_bytes(pid),
            cpu_share=(self.server_cpu - before.server_cpu) / seconds,
            cpu_wait_share=(self.server_wait - before.server_wait) / seconds,
            fds=len(os.listdir(f"/proc/{pid}/fd")),
            pictures_per_second=received / seconds,
            pictures_lost=max(0.0, 1 - received / expected) if expected else 0.0,
            latency_p95_ms=measures.percentiles(latencies).get("p95"),
            stalled=stalled,
            pages_open=sum(page.open for page in result.pages),
            load_average=os.getloadavg()[0],
            load_cpu_share=(self.load_cpu - before.load_cpu) / seconds,
            load_cpu_wait_share=(self.load_wait - before.load_wait) / seconds,
        )


# CPU / wait: the share of one core a process used, and the share of the time its
# threads were ready to run but waited for a core (the machine was busy).
HEADER: Final = (
    "| time | server memory | server CPU / wait | open fds | pictures/s | pictures lost "
    "| latency p95 | media stopped | pages open | load average | load process CPU / wait |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def row(sample: Sample) -> str:
    minutes, seconds = divmod(round(sample.at), 60)
    latency = "n/a" if sample.latency_p95_ms is None else f"{sample.latency_p95_ms:.1f} ms"
    return (
        f"| {minutes}:{seconds:02d} | {sample.rss_bytes / _MIB:.1f} MiB "
        f"| {sample.cpu_share:.0%} / {sample.cpu_wait_share:.0%} | {sample.fds} "
        f"| {sample.pictures_per_second:,.0f} | {sample.pictures_lost:.2%} "
        f"| {latency} | {sample.stalled} | {sample.pages_open} | {sample.load_average:.2f} "
        f"| {sample.load_cpu_share:.0%} / {sample.load_cpu_wait_share:.0%} |"
    )


@dataclass
class MemoryTrend:
    samples: int
    slope: float  # MiB per 10 minutes
    standard_error: float  # of the slope, same unit
    spread: float  # max - min, MiB

    @property
    def threshold(self) -> float:
        return max(2 * self.standard_error, GROWTH_FLOOR_MIB)

    @property
    def grows(self) -> bool:
        return self.slope > self.threshold


def memory_trend(samples: list[Sample], warm_up: float) -> MemoryTrend | None:
    """Least squares of memory against time after warm-up; None with fewer than three
    samples (a slope and its error need them)."""
    kept = [s for s in samples if s.at > warm_up]
    if len(kept) < 3:
        return None
    times = [s.at / 600 for s in kept]  # in units of 10 minutes
    mib = [s.rss_bytes / _MIB for s in kept]
    fit = statistics.linear_regression(times, mib)
    residuals = [m - (fit.intercept + fit.slope * t) for t, m in zip(times, mib, strict=True)]
    mean_time = statistics.fmean(times)
    spread_of_times = sum((t - mean_time) ** 2 for t in times)
    variance = sum(r * r for r in residuals) / (len(kept) - 2)
    return MemoryTrend(
        len(kept), fit.slope, math.sqrt(variance / spread_of_times), max(mib) - min(mib)
    )


def warm_up_seconds(minutes: float) -> float:
    return min(WARM_UP_SECONDS, minutes * 60 / 2)


def summary(result: Soak) -> list[str]:
    """The figures under the table, as Markdown list items, the verdicts last."""
    options, samples = result.options, result.samples
    warm_up = warm_up_seconds(options.minutes)
    trend = memory_trend(samples, warm_up)
    in_media = len(result.participants) - result.without_media_at_end
    join_failures = Counter(f for c in result.conferences for f in c.failures)
    cpu = [s.cpu_share for s in samples]
    loads = [s.load_average for s in samples]
    lost_pictures = (
        max(0.0, 1 - result.pictures_received / result.pictures_expected)
        if result.pictures_expected
        else 0.0
    )
    pictures_per_second = statistics.fmean(s.pictures_per_second for s in samples)
    lines = [
        f"- Held: {options.conferences} conferences x {options.people} people"
        f" ({len(result.participants)} joined, {in_media} with media at the end) and"
        f" {len(result.pages)} of {options.idle_pages} idle pages, for"
        f" {samples[-1].at / 60:.1f} minutes, sampled every {options.sample_seconds:g} s.",
    ]
    if trend is None:
        lines.append("- Memory after warm-up: too few samples to fit a slope.")
    else:
        lines.append(
            f"- Server memory after warm-up (samples after {warm_up / 60:g} min,"
            f" {trend.samples} of them): slope {trend.slope:+.2f} MiB per 10 minutes"
            f" (standard error {trend.standard_error:.2f}), max - min {trend.spread:.1f} MiB;"
            f" within noise means under {trend.threshold:.2f} MiB per 10 minutes (twice the"
            f" standard error, or {GROWTH_FLOOR_MIB:g} MiB if that is larger)."
        )
    lines += [
        f"- Server CPU (share of one core): mean {statistics.fmean(cpu):.1%},"
        f" p95 {measures.nearest_rank(sorted(cpu), 0.95):.1%}; open file descriptors"
        f" {min(s.fds for s in samples)} to {max(s.fds for s in samples)}.",
        f"- Pictures: {result.pictures_received:,} received of {result.pictures_expected:,}"
        f" sent to subscribers ({lost_pictures:.2%} lost), {pictures_per_second:,.0f} per"
        " second on average.",
        f"- Load average (1 min) during the hold: {min(loads):.2f} to {max(loads):.2f}, mean"
        f" {statistics.fmean(loads):.2f}, on {os.cpu_count()} CPUs; the load process used"
        f" {statistics.fmean(s.load_cpu_share for s in samples):.0%} of a core on average;"
        f" waiting for a core: the server {statistics.fmean(s.cpu_wait_share for s in samples):.0%}"
        f" of the time, the load process"
        f" {statistics.fmean(s.load_cpu_wait_share for s in samples):.0%}.",
        f"- Lost: pages closed by the server {result.pages_closed.total()}"
        f"{_counted(result.pages_closed)}; participants without media at the end"
        f" {result.without_media_at_end}; media stops of {STALL_SECONDS:g} s or more"
        f" {sum(result.stalls)} (in {sum(1 for n in result.stalls if n)} participants);"
        f" failed joins {join_failures.total() + len(result.page_failures)}"
        f"{_counted(join_failures + Counter(result.page_failures))};"
        f" errors in the server's log {result.server_errors}.",
    ]
    nothing_lost = not (
        result.pages_closed or result.without_media_at_end or any(result.stalls) or join_failures
        or result.page_failures or result.server_errors
    )  # fmt: skip
    lines.append("- **nothing lost**" if nothing_lost else "- **something was lost** (above)")
    if trend is not None and trend.grows:
        lines.append(f"- **memory grows after warm-up**: {trend.slope:+.2f} MiB per 10 minutes")
    elif trend is not None:
        # Flat memory says little about a load that fell away.
        held = "" if nothing_lost else ", but under less than the load set out (above)"
        lines.append(f"- **memory does not grow after warm-up**{held}")
    return lines


def _counted(reasons: Counter[str] | Counter[int | None]) -> str:
    if not reasons:
        return ""
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common()) + ")"


def as_markdown(result: Soak, argv: Sequence[str]) -> str:
    machine = (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
        f" Linux {platform.release()}, Python {platform.python_version()},"
        f" aiortc {aiortc.__version__}, aiohttp {aiohttp.__version__}"
    )
    return "\n".join(
        [
            DOC_BEGIN,
            f"{date.today().isoformat()}, {machine}; the server pinned to the first core, the"
            " load process to the others (what else ran on the machine: see the load average).",
            "",
            "```",
            " ".join(["python -m clinicconf.bench.soak", *argv]),
            "```",
            "",
            HEADER,
            *(row(s) for s in result.samples),
            "",
            *summary(result),
            DOC_END,
        ]
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.soak",
        description="Hold conferences and idle pages for minutes; memory and CPU over time.",
    )
    parser.add_argument("--conferences", type=int, default=5, help="held in media (5)")
    # Three: five conferences of four take the server's whole core (docs/reliability.md).
    parser.add_argument("--people", type=int, default=3, help="per conference (3)")
    parser.add_argument("--idle-pages", type=int, default=300, help="landing pages (300)")
    parser.add_argument("--minutes", type=float, default=10.0, help="held (10)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="between samples (10)")
    parser.add_argument(
        "--write", action="store_true", help="put the figures into docs/reliability.md"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.conferences <= 20 or not 2 <= args.people <= 8:
        parser.error("--conferences: 1 to 20; --people: 2 to 8")
    if not 0 <= args.idle_pages <= 1000:
        parser.error("--idle-pages: 0 to 1000")
    if not 0.5 <= args.minutes <= 60 or not 1 <= args.sample_seconds <= args.minutes * 60 / 3:
        parser.error("--minutes: 0.5 to 60; --sample-seconds: 1 to a third of the hold")

    time_limit = SETUP_SECONDS + args.minutes * 60 + TEARDOWN_SECONDS
    result = run_bounded(lambda: soak(args), time_limit)
    if result is None:
        return 1
    text = as_markdown(result, argv)
    print("\n".join(summary(result)))
    if args.write:
        write_doc(DOC_PATH, text, DOC_BEGIN, DOC_END, DOC_INTRODUCTION)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
