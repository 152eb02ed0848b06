"""The landing page under load: how long one change takes to reach every open page.

Schedules a Public Conference in a fresh data directory, starts the server in a
process of its own on 127.0.0.1, opens --clients guest pages on the conference's
public link and one host page, then --rounds times one more person arrives (a
presence change). For each arrival it reports how long after the newcomer said
hello each guest page heard of it (min, p50, p95, max over all the pages). See
docs/benchmarks.md.

    python -m clinicconf.bench.lobby [--clients 300] [--rounds 5]

Exits 0 whatever the figures; 1 when the server or the pages could not be brought
up, or the run overstayed --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import aiohttp

from .measures import nearest_rank
from .server import (
    SetupFailed,
    as_client,
    bench_settings,
    run_bounded,
    running_server,
    schedule_conference,
)

TARGET_P95_MS: Final = 100.0
# Pages connecting at the same moment: quick, without a thundering herd.
CONNECTING_AT_ONCE: Final = 50
PAGE_OPEN_SECONDS: Final = 20.0
ROUND_SECONDS: Final = 10.0
# Between changes, so that each meets a quiet lobby (and the host's page stays far
# below the flood limit of 20 messages in 5 s).
PAUSE_SECONDS: Final = 0.3


class Round:
    """One arrival: when each guest page heard of it."""

    def __init__(self, newcomer: str, expected: int) -> None:
        # Told apart from the round before by the newcomer's name.
        self.newcomer = newcomer
        self._expected = expected
        self.stamps: list[float] = []
        self.complete = asyncio.Event()

    def delivered(self, stamp: float) -> None:
        self.stamps.append(stamp)
        if len(self.stamps) == self._expected:
            self.complete.set()


class LoadedLobby:
    """The host's page and the guests' pages, each read by a task of its own that
    notes the moment news of an arrival reaches it."""

    def __init__(self, session: aiohttp.ClientSession, links: tuple[str, str], guests: int) -> None:
        self._session = session
        self._host_url, self._public_url = links
        self._guest_count = guests
        self._readers: list[asyncio.Task[None]] = []
        self._arrived = 0
        self._all_arrived = asyncio.Event()
        self._round = Round("", 0)

    async def open(self) -> None:
        """The host first, so that it sees every guest arrive; then the guests."""
        await self._open_page(self._host_url, {}, self._host_saw, client=0)
        slots = asyncio.Semaphore(CONNECTING_AT_ONCE)

        async def open_guest(number: int) -> None:
            async with slots:
                await self._open_page(
                    self._public_url, {"display_name": f"Guest {number}"}, self._guest_saw, number
                )

        opened = await asyncio.gather(
            *(open_guest(n) for n in range(1, self._guest_count + 1)), return_exceptions=True
        )
        for failure in opened:
            if isinstance(failure, BaseException):
                raise failure
        try:
            async with asyncio.timeout(PAGE_OPEN_SECONDS):
                await self._all_arrived.wait()
        except TimeoutError:
            raise SetupFailed(
                f"the host saw {self._arrived} of {self._guest_count} guests arrive"
            ) from None

    async def change(self, number: int) -> list[float]:
        """One more guest arrives, then leaves; how long (seconds) each guest page
        took to hear of the arrival. Fewer figures than guests: some never did."""
        newcomer = f"Latecomer {number}"
        self._round = current = Round(newcomer, self._guest_count)
        # Connecting is not timed; each latecomer is a client of its own.
        client = as_client(self._guest_count + number)
        ws = await self._session.ws_connect(self._public_url, headers=client)
        hello = {"v": 1, "id": 1, "type": "hello", "client_key": secrets.token_urlsafe(16)}
        sent_at = time.time()
        await ws.send_json(hello | {"display_name": newcomer})
        with suppress(TimeoutError):
            async with asyncio.timeout(ROUND_SECONDS):
                await current.complete.wait()
        await ws.close()
        return [stamp - sent_at for stamp in current.stamps]

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _open_page(
        self,
        url: str,
        hello: dict[str, Any],
        saw: Callable[[dict[str, Any], float], None],
        client: int,
    ) -> aiohttp.ClientWebSocketResponse:
        try:
            async with asyncio.timeout(PAGE_OPEN_SECONDS):
                ws = await self._session.ws_connect(url, headers=as_client(client))
                await ws.send_json(
                    {"v": 1, "id": 1, "type": "hello", "client_key": secrets.token_urlsafe(16)}
                    | hello
                )
                while (await ws.receive_json())["type"] != "welcome":
                    pass
        # (TypeError: the server closed the socket instead of welcoming the page.)
        except (aiohttp.ClientError, OSError, TimeoutError, TypeError) as exc:
            raise SetupFailed(f"a page could not join the lobby: {exc!r}") from exc
        self._readers.append(asyncio.create_task(_read(ws, saw), name="bench-page"))
        return ws

    def _host_saw(self, message: dict[str, Any], stamp: float) -> None:
        participant = message.get("participant", {})
        if message["type"] == "presence" and participant["kind"] == "guest":
            self._arrived += 1 if participant["active"] else -1
            if self._arrived == self._guest_count:
                self._all_arrived.set()

    def _guest_saw(self, message: dict[str, Any], stamp: float) -> None:
        participant = message.get("participant", {})
        if (
            message["type"] == "presence"
            and participant["name"] == self._round.newcomer
            and participant["active"]
        ):
            self._round.delivered(stamp)


async def _read(
    ws: aiohttp.ClientWebSocketResponse, saw: Callable[[dict[str, Any], float], None]
) -> None:
    async for frame in ws:
        stamp = time.time()  # the moment the page has the message, before decoding it
        if frame.type != aiohttp.WSMsgType.TEXT:
            return
        saw(json.loads(frame.data), stamp)


async def measure(clients: int, rounds: int) -> list[list[float]]:
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir))
        links = await schedule_conference(settings)
        log_path = Path(data_dir) / "server.log"
        try:
            # Inside out on the way out: the pages stop reading, their connections
            # drop, then the server stops.
            async with (
                running_server(settings, log_path),
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
            ):
                lobby = LoadedLobby(session, links, clients)
                try:
                    started = time.monotonic()
                    await lobby.open()
                    opened = time.monotonic() - started
                    print(f"{clients} guest pages and the host's open in {opened:.1f} s")
                    results = []
                    for number in range(1, rounds + 1):
                        await asyncio.sleep(PAUSE_SECONDS)
                        results.append(await lobby.change(number))
                    return results
                finally:
                    await lobby.close()
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise


# The first page's figure is the server's own delay (the change is written to the
# audit log before it goes out); the rest is the fan-out to every page.
_COLUMNS: Final = ("min ms", "p50 ms", "p95 ms", "max ms")


def report(rounds: list[list[float]], clients: int) -> str:
    def row(label: str, latencies: list[float], expected: int) -> str:
        ordered = sorted(seconds * 1000 for seconds in latencies)
        figures = (
            [ordered[0], nearest_rank(ordered, 0.5), nearest_rank(ordered, 0.95), ordered[-1]]
            if ordered
            else [math.nan] * 4
        )
        cells = "".join(f"{ms:>9.1f}" for ms in figures)
        return f"{label:>6}{f'{len(latencies)}/{expected}':>12}{cells}"

    lines = [f"{'round':>6}{'received':>12}" + "".join(f"{h:>9}" for h in _COLUMNS)]
    lines += [row(str(n), latencies, clients) for n, latencies in enumerate(rounds, 1)]
    everything = [seconds for latencies in rounds for seconds in latencies]
    lines.append(row("all", everything, clients * len(rounds)))
    p95 = nearest_rank(sorted(everything), 0.95) * 1000 if everything else math.inf
    verdict = "met" if p95 < TARGET_P95_MS else "NOT met"
    lines.append(f"target p95 under {TARGET_P95_MS:.0f} ms: {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.lobby",
        description="How long one change in a lobby takes to reach every open page.",
    )
    parser.add_argument("--clients", type=int, default=300, help="guest pages (300)")
    parser.add_argument("--rounds", type=int, default=5, help="changes measured (5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="for the whole run (120 s)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1:
        parser.error("--clients and --rounds must be at least 1")

    rounds = run_bounded(lambda: measure(args.clients, args.rounds), args.timeout)
    if rounds is None:
        return 1
    print(report(rounds, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
