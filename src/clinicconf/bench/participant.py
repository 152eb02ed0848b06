"""A headless participant: an aiortc peer that joins a conference over its websocket
the way the browser page does (docs/lobby-protocol.md, "The conference"): it says
hello, sends `join_media`, answers every offer with its microphone and camera on
the `publish` m-lines, and hands each frame it receives to `received`. The
benchmarks use it as it is; the tests give it cameras they can recognise."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

ANSWER_SECONDS = 10.0


class Participant:
    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, microphone: MediaStreamTrack,
        camera: MediaStreamTrack,
    ) -> None:  # fmt: skip
        self.ws = ws
        self._publish = {"audio": microphone, "video": camera}
        self.pc: RTCPeerConnection | None = None
        # The server's name for the media connection `pc` belongs to.
        self.connection: str | None = None
        self.welcome: dict[str, Any] = {}
        self.moderation: dict[str, Any] = {}
        # mid -> what the server says that m-line carries now.
        self.tracks: dict[str, dict[str, Any]] = {}
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed_with: int | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        # mid -> the task reading what arrives on it, for the current connection.
        self._reading: dict[str, asyncio.Task[None] | None] = {}

    @property
    def id(self) -> str:
        return str(self.welcome["you"]["id"])

    async def hello(self, **fields: Any) -> None:
        """Join the lobby; `display_name` for a public link."""
        fields.setdefault("client_key", secrets.token_urlsafe(16))
        await self.send("hello", **fields)
        while True:
            message = await self.ws.receive_json(timeout=ANSWER_SECONDS)
            if message["type"] == "welcome":
                self.welcome = message
                self.moderation = message["moderation"]
                break
        self._tasks.append(asyncio.create_task(self._read(), name="participant-reader"))

    async def send(self, type_: str, **fields: Any) -> int:
        """Send a message whose answer does not matter (the server may close first)."""
        self._next_id += 1
        await self.ws.send_json({"v": 1, "id": self._next_id, "type": type_, **fields})
        return self._next_id

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a message; its result or error."""
        message_id = await self.send(type_, **fields)
        future = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        return await asyncio.wait_for(future, ANSWER_SECONDS)

    async def expect(self, type_: str) -> dict[str, Any]:
        """The next message of `type_` from the server (others are passed over)."""
        while True:
            message = await asyncio.wait_for(self.messages.get(), ANSWER_SECONDS)
            if message["type"] == type_:
                return message

    def received(self, publisher: str | None, frame: av.AudioFrame | av.VideoFrame) -> None:
        """A frame decoded from `publisher` (None: on an m-line said to carry nothing)."""

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = frame.json()
            kind = message["type"]
            if kind in ("result", "error") and message["id"] in self._answers:
                self._answers.pop(message["id"]).set_result(message)
            elif kind == "offer":
                await self._answer(message)
            elif kind == "tracks" and message["connection"] == self.connection:
                self.tracks = {t["mid"]: t for t in message["tracks"]}
            elif kind == "media_closed" and message["connection"] == self.connection:
                await self._close_media()
            elif kind == "moderation":
                self.moderation = message
            self.messages.put_nowait(message)
        self.closed_with = self.ws.close_code

    async def _answer(self, offer: dict[str, Any]) -> None:
        if offer["connection"] != self.connection:  # a new media connection
            await self._close_media()
            # As Chrome does with the server's offers: one transport for every m-line.
            configuration = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            self.pc, self.connection = RTCPeerConnection(configuration), offer["connection"]
        pc = self.pc
        assert pc is not None
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        mine = {mid: self._publish[kind] for kind, mid in offer["publish"].items()}
        for transceiver in pc.getTransceivers():
            if transceiver.mid in mine:
                transceiver.sender.replaceTrack(mine[transceiver.mid])
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send("answer", connection=self.connection, sdp=pc.localDescription.sdp)
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in mine and mid not in self._reading:
                self._reading[mid] = self.watch(mid, transceiver, offer["sdp"])

    def watch(
        self, mid: str, transceiver: RTCRtpTransceiver, offer_sdp: str
    ) -> asyncio.Task[None] | None:
        """Start receiving on a new m-line: by default, decode what arrives and hand
        it to `received`, in a task that is cancelled with the connection (None: no
        task reads it)."""
        return asyncio.create_task(self._receive(mid, transceiver.receiver.track))

    async def _receive(self, mid: str, track: MediaStreamTrack) -> None:
        """Read what arrives on `mid`, crediting it to whoever the server says it
        carries now."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            entry = self.tracks.get(mid)
            if isinstance(frame, av.AudioFrame | av.VideoFrame):
                self.received(entry["participant"] if entry else None, frame)

    async def _close_media(self) -> None:
        for task in self._reading.values():
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reading, self.tracks = {}, {}
        if self.pc is not None:
            await self.pc.close()
        self.pc = self.connection = None

    async def close(self) -> None:
        await self.ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_media()
