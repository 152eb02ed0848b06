"""Participants made of real aiortc peers, joining a conference over its websocket
the way the browser page does (docs/lobby-protocol.md, "The conference"): each
sends a synthetic camera (a flat picture of its own shade) and microphone (a tone),
answers the server's offers, and counts what it receives from whom, decoded.
Everything runs in the test's process, on 127.0.0.1."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import av
import pytest
from aiohttp import WSMsgType
from aiohttp.client_ws import ClientWebSocketResponse
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from .lobby_helpers import Client

RECEIVE_TIMEOUT = 10.0
VIDEO_SIZE = (160, 120)
FRAMES_PER_SECOND = 15
SAMPLE_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms


class FlatCamera(MediaStreamTrack):
    """A camera filming a flat grey of `shade`: whoever receives it can tell whose
    picture it is from the brightness of the decoded frames."""

    kind = "video"

    def __init__(self, shade: int) -> None:
        super().__init__()
        self._shade = shade
        self._count = 0
        self._start = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        self._count += 1
        await asyncio.sleep(
            max(0, self._start + self._count / FRAMES_PER_SECOND - time.monotonic())
        )
        frame = av.VideoFrame(*VIDEO_SIZE, "yuv420p")
        for plane, value in zip(frame.planes, (self._shade, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = self._count * 90_000 // FRAMES_PER_SECOND
        frame.time_base = fractions.Fraction(1, 90_000)
        return frame


class ToneMicrophone(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._start = time.monotonic()
        tone = (int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(960))
        self._pcm = array.array("h", tone).tobytes()

    async def recv(self) -> av.AudioFrame:
        self._count += 1
        due = self._start + self._count * AUDIO_SAMPLES / SAMPLE_RATE
        await asyncio.sleep(max(0, due - time.monotonic()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._count * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def mean_luma(frame: av.VideoFrame) -> float:
    plane = frame.planes[0]
    data = bytes(plane)  # rows are line_size apart: skip their padding
    sample = [
        data[y * plane.line_size + x]
        for y in range(0, frame.height, 8)
        for x in range(0, frame.width, 8)
    ]
    return sum(sample) / len(sample)


def loudness(frame: av.AudioFrame) -> float:
    samples = array.array("h", bytes(frame.planes[0]))
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


class MediaParticipant:
    """One page in the conference, with its aiortc peer."""

    def __init__(self, ws: ClientWebSocketResponse, shade: int) -> None:
        self.ws = ws
        self.shade = shade
        self.camera = FlatCamera(shade)
        self.microphone = ToneMicrophone()
        self.pc: RTCPeerConnection | None = None
        self.welcome: dict[str, Any] = {}
        self.moderation: dict[str, Any] = {}
        # mid -> what the server said that m-line carries now.
        self.tracks: dict[str, dict[str, Any]] = {}
        # (publisher id, kind) -> frames decoded; video frames only if of the right shade.
        self.frames: Counter[tuple[str, str]] = Counter()
        self.wrong_pictures = 0
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed_with: int | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._reading_mids: set[str] = set()
        # Whom each shade belongs to, to check pictures: filled in by the test's roster.
        self.shades: dict[str, int] = {}

    @property
    def id(self) -> str:
        return str(self.welcome["you"]["id"])

    async def hello(self, **fields: Any) -> None:
        fields.setdefault("client_key", secrets.token_urlsafe(16))
        await self._send("hello", fields)
        while True:
            message = await self.ws.receive_json(timeout=RECEIVE_TIMEOUT)
            if message["type"] == "welcome":
                self.welcome = message
                self.moderation = message["moderation"]
                break
        self._tasks.append(asyncio.create_task(self._read()))

    async def send(self, type_: str, **fields: Any) -> None:
        """Send a message whose answer does not matter (the server may close first)."""
        await self._send(type_, fields)

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a message; its result or error."""
        message_id = await self._send(type_, fields)
        future = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        return await asyncio.wait_for(future, RECEIVE_TIMEOUT)

    async def expect(self, type_: str) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.messages.get(), RECEIVE_TIMEOUT)
            if message["type"] == type_:
                return message

    async def _send(self, type_: str, fields: dict[str, Any]) -> int:
        self._next_id += 1
        await self.ws.send_json({"v": 1, "id": self._next_id, "type": type_, **fields})
        return self._next_id

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != WSMsgType.TEXT:
                break
            message = frame.json()
            kind = message["type"]
            if kind in ("result", "error") and message["id"] in self._answers:
                self._answers.pop(message["id"]).set_result(message)
            elif kind == "offer":
                await self._answer(message)
            elif kind == "tracks":
                self.tracks = {t["mid"]: t for t in message["tracks"]}
            elif kind == "moderation":
                self.moderation = message
            self.messages.put_nowait(message)
        self.closed_with = self.ws.close_code

    async def _answer(self, offer: dict[str, Any]) -> None:
        if self.pc is None:
            # As Chrome does with our offers: one transport for every m-line.
            self.pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        mine = {offer["publish"]["audio"]: self.microphone, offer["publish"]["video"]: self.camera}
        for transceiver in pc.getTransceivers():
            if transceiver.mid in mine:
                transceiver.sender.replaceTrack(mine[transceiver.mid])
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        await self._send("answer", {"sdp": pc.localDescription.sdp})
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid not in mine and mid is not None and mid not in self._reading_mids:
                self._reading_mids.add(mid)
                track = transceiver.receiver.track
                self._tasks.append(asyncio.create_task(self._count(mid, track)))

    async def _count(self, mid: str, track: MediaStreamTrack) -> None:
        """Decode what arrives on `mid`, crediting it to whoever the server says it
        carries now."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            entry = self.tracks.get(mid)
            publisher = entry["participant"] if entry else "nobody"
            if isinstance(frame, av.VideoFrame):
                expected = self.shades.get(publisher)
                if expected is None or abs(mean_luma(frame) - expected) > 12:
                    self.wrong_pictures += 1
                    continue
                self.frames[(publisher, "video")] += 1
            elif isinstance(frame, av.AudioFrame) and loudness(frame) > 500:
                self.frames[(publisher, "audio")] += 1

    async def receiving(self, seconds: float = 1.0) -> set[tuple[str, str]]:
        """What frames arrived from, over the next `seconds`."""
        before = Counter(self.frames)
        await asyncio.sleep(seconds)
        return {key for key, count in self.frames.items() if count > before[key]}

    async def close(self) -> None:
        await self.ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pc is not None:
            await self.pc.close()


Join = Callable[..., Awaitable[MediaParticipant]]


@pytest.fixture
async def join(client: Client) -> AsyncIterator[Join]:
    """Open a page on `path` and say hello; `shade` is the participant's picture."""
    opened: list[MediaParticipant] = []

    async def join_(path: str, shade: int, **hello: Any) -> MediaParticipant:
        participant = MediaParticipant(await client.ws_connect(path), shade)
        opened.append(participant)
        await participant.hello(**hello)
        return participant

    yield join_
    for participant in opened:
        await participant.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the expected media never came"
        await asyncio.sleep(0.2)
