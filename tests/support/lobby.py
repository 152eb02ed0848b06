"""What the landing page's websocket tests share: a Public Conference under way with
its links, and pages that speak the protocol (docs/lobby-protocol.md) as the
browser does. Test modules re-export the fixtures (`import lobby as lobby`) so
that pytest finds them."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.client_ws import ClientWebSocketResponse
from yarl import URL

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.config import Forwarding, Settings
from clinicconf.db import utc_now
from clinicconf.links import LinkKind
from clinicconf.schedule import EventInput, EventTypeInput, PatientInput

from .accounts import Account
from .servers import LOOPBACK_ICE, Client

GRACE_SECONDS = 1
RECEIVE_TIMEOUT = 5.0


@pytest.fixture
def settings(tmp_path: Path, forwarding: Forwarding) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        presence_grace_seconds=GRACE_SECONDS,
        ice_addresses=LOOPBACK_ICE,
        forwarding=forwarding,
    )


@dataclass
class Lobby:
    event_id: int
    host: StaffUser
    host_path: str
    colleague_path: str
    pat_path: str
    quinn_path: str
    public_path: str


async def socket_path(
    app: web.Application, event_id: int, kind: LinkKind, person_id: int | None
) -> str:
    """The websocket path of a person's (or the public) join link of an event."""
    url = await app[keys.SCHEDULER].links.url_for(app[keys.DATABASE], event_id, kind, person_id)
    assert url is not None
    return URL(url).path + "/ws"


@pytest.fixture
async def lobby(app: web.Application, admin: Account, staff: Account) -> Lobby:
    """A Public Conference under way: Ada and Sam (staff), Pat and Quinn (patients)."""
    scheduler = app[keys.SCHEDULER]
    host = StaffUser(admin.id, "Ada Admin", admin.email, True)
    kind = await scheduler.create_event_type(host, EventTypeInput("Group", True, True))
    pat = await scheduler.create_patient(host, PatientInput("Pat Patel", "R-1"))
    quinn = await scheduler.create_patient(host, PatientInput("Quinn Quist", "R-2"))
    start = utc_now() - timedelta(minutes=5)
    saved = await scheduler.create_event(
        host,
        EventInput(
            "Group session", kind.id, start, start + timedelta(hours=1), [admin.id, staff.id],
            [pat.id, quinn.id],
        ),
    )  # fmt: skip
    event_id = saved.event.id
    return Lobby(
        event_id,
        host,
        await socket_path(app, event_id, "staff", admin.id),
        await socket_path(app, event_id, "staff", staff.id),
        await socket_path(app, event_id, "patient", pat.id),
        await socket_path(app, event_id, "patient", quinn.id),
        await socket_path(app, event_id, "public", None),
    )


class Page:
    """One open landing page's socket."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0
        # What arrived while waiting for something else.
        self.passed_over: list[dict[str, Any]] = []

    def next_id(self) -> int:
        """An id larger than any this page sent before."""
        self._next_id += 1
        return self._next_id

    async def send(self, type_: str, **fields: Any) -> int:
        message_id = self.next_id()
        await self.ws.send_json({"v": 1, "id": message_id, "type": type_, **fields})
        return message_id

    async def receive(self, type_: str | None = None) -> dict[str, Any]:
        """The next message (of `type_`, skipping others such as time updates)."""
        while True:
            message = await self.ws.receive_json(timeout=RECEIVE_TIMEOUT)
            assert message["v"] == 1
            if type_ is None or message["type"] == type_:
                return dict(message)
            self.passed_over.append(message)

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a message and return its answer: a result or an error."""
        message_id = await self.send(type_, **fields)
        while True:
            answer = await self.receive()
            if answer["type"] in ("result", "error") and answer["id"] == message_id:
                return answer
            self.passed_over.append(answer)

    @contextlib.asynccontextmanager
    async def reading_meanwhile(self) -> AsyncIterator[None]:
        """Reads while the block runs, as a browser's page does, into `passed_over`.
        aiohttp's client answers the server's heartbeat only while it reads: a page
        left unread for longer than the heartbeat is dropped."""

        async def read() -> None:
            while True:
                self.passed_over.append(await self.ws.receive_json())

        reader = asyncio.create_task(read())
        try:
            yield
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def closed(self) -> int:
        """The close code, once the server has closed the socket."""
        while True:
            frame = await self.ws.receive(timeout=RECEIVE_TIMEOUT)
            if frame.type == WSMsgType.CLOSE:
                return int(frame.data)

    async def presence(self) -> dict[str, Any]:
        return dict((await self.receive("presence"))["participant"])


@pytest.fixture
async def open_page(client: Client) -> AsyncIterator[Any]:
    pages: list[Page] = []

    async def open_(path: str, **hello: Any) -> tuple[Page, dict[str, Any]]:
        page = Page(await client.ws_connect(path))
        pages.append(page)
        hello.setdefault("client_key", secrets.token_urlsafe(16))
        await page.send("hello", **hello)
        welcome = await page.receive("welcome")
        return page, welcome

    yield open_
    for page in pages:
        await page.ws.close()


def by_name(welcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in welcome["participants"]}
