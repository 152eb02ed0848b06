"""What the benchmarks share: a conference scheduled in a fresh data directory, and
the server started in a process of its own on 127.0.0.1 (media on loopback too)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Final, TypeVar

from ..accounts import StaffUser
from ..config import Forwarding, Settings
from ..db import Database, utc_now
from ..links import JoinLinks
from ..schedule import EventInput, EventTypeInput, StaffInput
from ..scheduling import Scheduler
from ..security import load_or_create_secret_key

HOST: Final = "127.0.0.1"
# The load's pages arrive as a clinic's do: each from a client of its own, here
# through a reverse proxy on 127.0.0.1, so that the server's limits per client address
# apply to each page as they would. The addresses are only named in a header, never
# sent to: 198.18.0.0/15 is set aside for benchmarks (RFC 2544).
BENCH_CLIENTS: Final = ipaddress.ip_network("198.18.0.0/15")
SERVER_START_SECONDS: Final = 20.0
SERVER_STOP_SECONDS: Final = 5.0
# Names another checkout's `src` for the server to run from (running_server).
SERVER_SOURCE_VARIABLE: Final = "CLINICCONF_BENCH_SERVER_SOURCE"

Result = TypeVar("Result")


def bench_settings(data_dir: Path, forwarding: Forwarding = "packets") -> Settings:
    """A server for one run: its own data, loopback only, nobody kept present after
    leaving (a run measures what it does, not grace periods)."""
    return Settings(
        host=HOST,
        port=free_port(),
        data_dir=data_dir,
        presence_grace_seconds=0,
        ice_addresses=HOST,
        forwarding=forwarding,
        trusted_proxies=HOST,
    )


def as_client(number: int) -> dict[str, str]:
    """Headers for a page that comes from the `number`th client of the load."""
    return {"X-Forwarded-For": str(BENCH_CLIENTS[1 + number % (BENCH_CLIENTS.num_addresses - 2)])}


class SetupFailed(Exception):
    """The server or the pages could not be brought up: nothing was measured."""


async def schedule_conference(settings: Settings) -> tuple[str, str]:
    """A Public Conference under way with one staff member to host it, recorded as
    the Scheduler records any; returns the websocket URLs of the host's link and of
    the public link."""
    [links] = await schedule_conferences(settings, 1)
    return links


async def schedule_conferences(settings: Settings, count: int) -> list[tuple[str, str]]:
    """`count` of them, at the same time, with the same host."""
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        secret_key = load_or_create_secret_key(settings.secret_key_path)
        links = JoinLinks(secret_key, settings.public_base_url)
        scheduler = Scheduler(db, links, settings.phone_region)
        staff = await scheduler.create_staff(
            None, StaffInput("Harriet Host", "host@bench.invalid", is_admin=True)
        )
        host = StaffUser(staff.id, staff.name, staff.email, is_admin=True)
        kind = await scheduler.create_event_type(host, EventTypeInput("Open session", True, True))
        start = utc_now() - timedelta(minutes=5)
        urls = []
        for number in range(1, count + 1):
            saved = await scheduler.create_event(
                host,
                EventInput(
                    f"Load check {number}", kind.id, start, start + timedelta(hours=1),
                    [staff.id], [],
                ),
            )  # fmt: skip
            event_id = saved.event.id
            host_url = await scheduler.my_link(host, event_id)
            public_url = await scheduler.public_link(host, event_id)
            urls.append((websocket_url(host_url), websocket_url(public_url)))
    finally:
        await db.close()
    return urls


def websocket_url(join_url: str) -> str:
    return "ws://" + join_url.removeprefix("http://") + "/ws"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def running_server(
    settings: Settings, log_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m clinicconf serve` in a process of its own, stopped on the way out.
    With SERVER_SOURCE_VARIABLE set to another checkout's `src`, the server runs that
    code under this load: two versions compared on the same machine, same day."""
    source = os.environ.get(SERVER_SOURCE_VARIABLE)
    env = None if source is None else {**os.environ, "PYTHONPATH": source}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clinicconf",
            "--data-dir", str(settings.data_dir), "--host", HOST, "--port", str(settings.port),
            "--presence-grace-seconds", str(settings.presence_grace_seconds),
            "--ice-addresses", settings.ice_addresses, "--forwarding", settings.forwarding,
            "--trusted-proxies", settings.trusted_proxies,
            "--log-level", "WARNING", "serve",
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
        try:
            await _wait_until_listening(process, settings.port)
            yield process
        finally:
            await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Asked to stop; killed if it has not within a few seconds, or if the wait is
    cut short by the run's time limit."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        with suppress(TimeoutError):
            async with asyncio.timeout(SERVER_STOP_SECONDS):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()


async def _wait_until_listening(process: asyncio.subprocess.Process, port: int) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.returncode is not None:
            raise SetupFailed(f"the server exited at once with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise SetupFailed(
                    f"the server did not listen within {SERVER_START_SECONDS:.0f} s"
                ) from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


def run_bounded(measure: Callable[[], Awaitable[Result]], timeout: float) -> Result | None:
    """Run a measurement, cut short after `timeout` seconds; None, once the reason is
    printed, when it could not be brought up or took too long."""

    async def bounded() -> Result:
        async with asyncio.timeout(timeout):
            return await measure()

    try:
        return asyncio.run(bounded())
    except SetupFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
    except TimeoutError:
        print(f"failed: the run took longer than {timeout:.0f} s", file=sys.stderr)
    return None


@contextmanager
def server_core() -> Iterator[Callable[[], None]]:
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
