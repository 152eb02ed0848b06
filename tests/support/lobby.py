"""What the landing page's websocket tests share: a Public Conference under way with
its links (the `lobby` fixture, in tests/conftest.py), and pages that speak the
protocol (docs/lobby-protocol.md) as the browser does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.client_ws import ClientWebSocketResponse
from yarl import URL

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.links import LinkKind

GRACE_SECONDS = 1
RECEIVE_TIMEOUT = 5.0


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


def by_name(welcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in welcome["participants"]}
