"""One page's websocket as the server writes to it: a bounded queue and a single
writer task, so that a slow page never holds up the others. A page that cannot
keep up is closed rather than let its queue grow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from aiohttp import WSCloseCode, web

from ..conference.identity import Closing, Identity
from ..conference.visibility import now_ms
from ..page_messages import ServerMessage, Time
from .protocol import PROTOCOL_VERSION, close_code, close_text

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 64
# The server's clock goes out this often, so that every page's "Time Left" stays right.
TIME_INTERVAL_SECONDS: Final = 30.0
CLOSE_TIMEOUT_SECONDS: Final = 5.0
DRAIN_SECONDS: Final = 1.0


class PageConnection:
    def __init__(self, ws: web.WebSocketResponse, identity: Identity) -> None:
        self.ws = ws
        self.identity = identity
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name="page-writer")

    def send(self, message: ServerMessage) -> None:
        """Queue a message; never blocks."""
        if self._closer is not None:
            return
        try:
            self._queue.put_nowait({"v": PROTOCOL_VERSION, **message})
        except asyncio.QueueFull:
            log.warning("closing a page that does not read what it is sent")
            self._closer = asyncio.create_task(
                self.end(WSCloseCode.POLICY_VIOLATION, "too slow"), name="page-closer"
            )

    async def close(self, why: Closing) -> None:
        """Closed by the conference, for `why`."""
        await self.end(close_code(why), close_text(why))

    async def end(self, code: int, reason: str) -> None:
        """Idempotent. What is queued (a last "cancelled", say) goes out first, for
        a moment at most; then the writer stops and the socket closes."""
        if self._writer is not None:
            if not self._writer.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_SECONDS):
                        await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                # Not drained: aiohttp shares one drain wait among its writers, and the
                # writer cancelled above (stuck on a page that does not read) cancelled
                # it; draining would raise CancelledError and leave the socket open.
                await self.ws.close(code=code, message=reason.encode(), drain=False)

    async def finish(self) -> None:
        """After the page's socket has ended: nothing of this connection keeps running."""
        await self.end(WSCloseCode.GOING_AWAY, "closed")
        if self._closer is not None:
            await self._closer

    async def _write(self) -> None:
        while True:
            try:
                async with asyncio.timeout(TIME_INTERVAL_SECONDS):
                    message = await self._queue.get()
            except TimeoutError:
                clock: Time = {"type": "time", "server_time": now_ms()}
                if not await self._send({"v": PROTOCOL_VERSION, **clock}):
                    return
                continue
            try:
                if not await self._send(message):
                    return
            finally:
                self._queue.task_done()

    async def _send(self, message: dict[str, Any]) -> bool:
        """False once the page has gone."""
        try:
            await self.ws.send_json(message)
        except ConnectionError:
            return False
        return True
