"""A headless participant: an aiortc peer that joins a conference over its websocket
the way the browser page does (docs/lobby-protocol.md, "The conference"): it says
hello, sends `join_media`, answers every offer with its microphone and camera on
the `publish` m-lines, and hands each frame it receives to `received`. The tests
give it cameras they can recognise.

The SFU benchmark's load uses `PacketParticipant` instead, which costs far less than
the server it loads: it sends a pre-encoded clip's packets itself, paced by a timer
of its own, and counts what arrives from the RTP headers (in the clear under SRTP),
below aiortc's receive path, decrypting only a sample."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import time
from typing import Any, Final

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

from ..moderation import Kind
from ..sfu.passthrough.outlet import PacketOutlet
from ..sfu.passthrough.rtp import Received, ntp_now, rtp_extension
from ..sfu.passthrough.wire import Wire
from . import clip

ANSWER_SECONDS = 10.0


class Participant:
    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, microphone: MediaStreamTrack | None,
        camera: MediaStreamTrack | None,
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
        mine: dict[str, Kind] = {mid: kind for kind, mid in offer["publish"].items()}
        for transceiver in pc.getTransceivers():
            if transceiver.mid in mine:
                self.publish(mine[transceiver.mid], transceiver)
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send("answer", connection=self.connection, sdp=pc.localDescription.sdp)
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in mine and mid not in self._reading:
                self._reading[mid] = self.watch(mid, transceiver, offer["sdp"])

    def publish(self, kind: Kind, transceiver: RTCRtpTransceiver) -> None:
        """Send on a `publish` m-line (at each offer): by default, the microphone or
        camera given, through aiortc's sender."""
        track = self._publish[kind]
        if track is not None:
            transceiver.sender.replaceTrack(track)

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


# A publisher's pace: a tick every sound frame (20 ms), a picture every other tick.
TICK_SECONDS: Final = clip.AUDIO_FRAME_SAMPLES / clip.SAMPLE_RATE
TICKS_PER_PICTURE: Final = round(1 / clip.FRAMES_PER_SECOND / TICK_SECONDS)
PICTURE_TICKS: Final = 90_000 // clip.FRAMES_PER_SECOND  # RTP's 90 kHz clock
# Further behind its schedule than this, a publisher skips the ticks it missed (and
# counts them: the load did not keep up) rather than sending them all at once.
MAX_LATE_TICKS: Final = 2
# One video packet in this many is decrypted (the first of an m-line's included).
SAMPLE_EVERY: Final = 8
# What the publishers' packets carry before their outlet rewrites them with its own.
_SOURCE_SSRC: Final = {"audio": 1, "video": 2}
_OPUS_TYPE, _VP8_TYPE = 111, 96
_VP8: Final = re.compile(r"a=rtpmap:(\d+) VP8/90000")


class _Publishing(PacketOutlet):
    """A publisher's own sending m-line, fed by `PacketParticipant`: a keyframe is
    due when its stream starts (again) and when the server asks for one (PLI or
    FIR), as a browser's encoder gives one."""

    keyframe_due = True

    def _restart(self) -> None:
        super()._restart()
        self.keyframe_due = True

    def _keyframe_wanted(self) -> None:
        self.keyframe_due = True


class Line:
    """What has arrived on one receiving m-line: packets, and for video its pictures
    (packets with the marker bit), when the first video packet came, and from whom
    (the server's `tracks` message says)."""

    __slots__ = ("first_at", "mid", "packets", "pictures", "publisher", "video", "video_packets")

    def __init__(self, mid: str, video: bool) -> None:
        self.mid = mid
        self.video = video
        self.packets = self.pictures = self.video_packets = 0
        self.first_at = 0.0  # time.monotonic(); 0: nothing yet
        self.publisher: str | None = None


class PacketParticipant(Participant):
    """A participant whose media costs the load process little: it publishes the
    packetized clip through a `PacketOutlet` on each of its sending m-lines (the
    server's own fast path, at its own pace: a timer of its own, not aiortc's sender
    loop), and receives below aiortc (`Wire.listen`): each packet is counted from its
    RTP header, in the clear, by m-line (its SSRC, learnt from the mid header
    extension), and one video packet in SAMPLE_EVERY is decrypted and handed to
    `sampled`. Nothing is decoded, and nothing reaches aiortc's receivers (so nothing
    is NACKed: a packet the server drops is lost)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, media: clip.Packets) -> None:
        super().__init__(ws, None, None)
        self._media = media
        # Publishing: the current connection's outlets, and the pace.
        self._outlets: dict[Kind, tuple[RTCRtpTransceiver, _Publishing]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._ticks = self._deltas = 0
        self._sequence_numbers = {"audio": 0, "video": 0}
        self.late_ticks = 0
        # Receiving: every RTP packet, the current connection's m-lines by mid and by
        # SSRC, and the pictures of the connections before it.
        self.packets = 0
        self.lines: dict[str, Line] = {}
        self._by_ssrc: dict[bytes, Line] = {}
        self._wire: Wire | None = None
        self._video_types: set[int] = set()
        self._pictures_before = 0
        self.failures = 0

    @property
    def video_frames(self) -> int:
        """Pictures received (whole or not: their last packet), since joining."""
        return self._pictures_before + sum(line.pictures for line in self.lines.values())

    # --- publishing ---------------------------------------------------------------------

    def publish(self, kind: Kind, transceiver: RTCRtpTransceiver) -> None:
        mine = self._outlets.get(kind)
        if mine is None or mine[0] is not transceiver:
            self._outlets[kind] = (transceiver, _Publishing(transceiver, kind))
        if self._timer is None:
            loop = asyncio.get_running_loop()
            # Publishers out of step with each other, as people are.
            self._due = loop.time() + random.random() * TICK_SECONDS  # noqa: S311
            self._timer = loop.call_at(self._due, self._tick)

    def sent_picture(self, payloads: tuple[bytes, ...]) -> None:
        """A picture's packets have just been sent."""

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        late = int((loop.time() - self._due) / TICK_SECONDS)
        if late > MAX_LATE_TICKS:
            self.late_ticks += late
            self._ticks += late
            self._due += late * TICK_SECONDS
        try:
            self._send()
        except Exception:  # a publisher's trouble must not stop its pace
            self.failures += 1
        self._ticks += 1
        self._due += TICK_SECONDS
        self._timer = loop.call_at(self._due, self._tick)

    def _send(self) -> None:
        """This tick's sound frame, and every other tick a picture: the keyframe if one
        is due, else the next delta of the loop. Nothing until the connection is up."""
        audio, video = self._outlets.get("audio"), self._outlets.get("video")
        dtls = next(iter(self._outlets.values()))[0].sender.transport
        if dtls is None or dtls.state != "connected":
            return
        ntp, ticks, numbers = ntp_now(), self._ticks, self._sequence_numbers
        if audio is not None:
            frames = self._media.audio
            timestamp = ticks * clip.AUDIO_FRAME_SAMPLES & 0xFFFFFFFF
            packet = Received(False, _OPUS_TYPE, numbers["audio"], timestamp,
                              _SOURCE_SSRC["audio"], frames[ticks % len(frames)])  # fmt: skip
            audio[1].forward(packet, False, ntp)
            numbers["audio"] = numbers["audio"] + 1 & 0xFFFF
        if video is None or ticks % TICKS_PER_PICTURE:
            return
        outlet = video[1]
        keyframe = outlet.keyframe_due
        if keyframe:
            outlet.keyframe_due = False  # set again if the stream has to start over
            picture = self._media.keyframe
        else:
            picture = self._media.deltas[self._deltas % len(self._media.deltas)]
            self._deltas += 1
        timestamp = ticks // TICKS_PER_PICTURE * PICTURE_TICKS & 0xFFFFFFFF
        number, last = numbers["video"], len(picture) - 1
        for index, payload in enumerate(picture):
            packet = Received(index == last, _VP8_TYPE, number, timestamp,
                              _SOURCE_SSRC["video"], payload)  # fmt: skip
            outlet.forward(packet, keyframe and index == 0, ntp)
            number = number + 1 & 0xFFFF
        numbers["video"] = number
        self.sent_picture(picture)

    # --- receiving ----------------------------------------------------------------------

    def watch(
        self, mid: str, transceiver: RTCRtpTransceiver, offer_sdp: str
    ) -> asyncio.Task[None] | None:
        if self._wire is None:
            self._wire = Wire.of(transceiver.receiver.transport)
            self._wire.listen(self._arrived)
        video = transceiver.kind == "video"
        if video:
            self._video_types.update(int(pt) for pt in _VP8.findall(offer_sdp))
        self.lines[mid] = Line(mid, video)
        return None  # no task: the packets are counted as they arrive

    def first_video_packet(self, line: Line) -> None:
        """`line` has had its first video packet (at `line.first_at`), and says whose."""

    def sampled(self, line: Line, packet: bytes) -> None:
        """One video packet in SAMPLE_EVERY, decrypted, as it arrives."""

    def _arrived(self, data: bytes) -> None:
        """Called in the socket's callback, for each RTP packet: nothing may escape."""
        try:
            self.packets += 1
            line = self._by_ssrc.get(data[8:12])
            if line is None:
                line = self._line_of(data)
                if line is None:
                    return
            line.packets += 1
            if not line.video or data[1] & 0x7F not in self._video_types:
                return
            if data[1] & 0x80:
                line.pictures += 1
            if line.publisher is None:
                if not line.first_at:
                    line.first_at = time.monotonic()
                entry = self.tracks.get(line.mid)
                if entry is None or entry.get("participant") is None:
                    return  # whose it is comes in a message of its own
                line.publisher = str(entry["participant"])
                self.first_video_packet(line)
            line.video_packets += 1
            if line.video_packets % SAMPLE_EVERY == 1 and self._wire is not None:
                packet = self._wire.unprotect(data)
                if packet is not None:
                    self.sampled(line, packet)
        except Exception:
            self.failures += 1

    def _line_of(self, data: bytes) -> Line | None:
        """The m-line of a packet from an SSRC not seen yet, by its mid (RFC 8843)."""
        assert self._wire is not None
        mid = rtp_extension(data, self._wire.header_extensions.mid or 0)
        line = None if mid is None else self.lines.get(mid.decode("ascii", "replace"))
        if line is not None:
            self._by_ssrc[data[8:12]] = line
        return line

    async def _close_media(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pictures_before = self.video_frames
        self._outlets, self.lines, self._by_ssrc, self._wire = {}, {}, {}, None
        await super()._close_media()
