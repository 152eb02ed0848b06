"""The soak's load (bench/soak.py says what it measures): idle landing pages, and
conferences of counting participants in media, held on a server of its own while
the server's and this process's figures are sampled (`Sample`), each printed as a
row of the table as it comes."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import aiohttp

from ..sfu import ice
from . import clip, measures
from .counting import EVERYONE_RECEIVES_SECONDS, CountingParticipant, SendLog
from .lobby import CONNECTING_AT_ONCE, PAGE_OPEN_SECONDS
from .server import (
    SetupFailed,
    as_client,
    bench_settings,
    running_server,
    schedule_conferences,
    server_core,
)

Answer = TypeVar("Answer")

STALL_SECONDS: Final = 3.0
STALL_CHECK_SECONDS: Final = 1.0
# Far under the 500 pages a conference admits; several lobbies, as on a busy day.
PAGES_PER_LOBBY: Final = 100
MIB: Final = 2**20
_SERVER_ERROR = re.compile(r"^\d{4}-\d\d-\d\d \S+ (ERROR|CRITICAL) ", re.MULTILINE)


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
        f"| {minutes}:{seconds:02d} | {sample.rss_bytes / MIB:.1f} MiB "
        f"| {sample.cpu_share:.0%} / {sample.cpu_wait_share:.0%} | {sample.fds} "
        f"| {sample.pictures_per_second:,.0f} | {sample.pictures_lost:.2%} "
        f"| {latency} | {sample.stalled} | {sample.pages_open} | {sample.load_average:.2f} "
        f"| {sample.load_cpu_share:.0%} / {sample.load_cpu_wait_share:.0%} |"
    )
