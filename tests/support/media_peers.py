"""Participants made of real aiortc peers (clinicconf.bench.participant: they join
as the browser page does), each sending a synthetic camera (a flat picture of its
own shade) and microphone (a tone), and counting what they decode from whom; and a
conference of them: three in a started conference, entering its media, checking who
receives exactly whom. Everything runs in the test's process, on 127.0.0.1."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import av
from aiohttp.client_ws import ClientWebSocketResponse
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from clinicconf.bench.participant import Participant

from .lobby import Lobby
from .servers import wait_until

VIDEO_SIZE = (160, 120)
# Longer without a picture from someone is a pause (hidden, then shown again).
PAUSE_SECONDS = 0.5
_RTX = re.compile(r"a=rtpmap:(\d+) rtx/90000")
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
    """A microphone hearing a steady tone of `frequency` Hz: a multiple of 50 Hz
    repeats exactly every 20 ms frame, so the sound has no other frequency in it."""

    kind = "audio"

    def __init__(self, frequency: int) -> None:
        super().__init__()
        self._count = 0
        self._start = time.monotonic()
        tone = (
            int(8000 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))
            for i in range(AUDIO_SAMPLES)
        )
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


def begins_vp8_keyframe(payload: bytes) -> bool:
    """RFC 7741: the payload descriptor (one byte, more with its X bit and the bits
    of the extension byte), then the VP8 frame's first byte, whose lowest bit is 0
    for a keyframe; S=1 and PID=0 in the descriptor mark the frame's first packet."""
    if not payload:
        return False
    first, size = payload[0], 1
    if first & 0x80:  # X: an extension byte follows, saying what else follows
        extension = payload[1]
        size = 2
        if extension & 0x80:  # I: a picture id, one or two bytes
            size += 2 if payload[size] & 0x80 else 1
        size += bool(extension & 0x40) + bool(extension & 0x30)  # TL0PICIDX; TID/KEYIDX
    starts_partition_zero = first & 0x10 and (first & 0x0F) == 0
    return bool(starts_partition_zero) and len(payload) > size and not payload[size] & 0x01


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


class MediaParticipant(Participant):
    """A participant whose camera films a flat `shade`, and who counts what it
    decodes by publisher, checking each picture is the publisher's own. With
    `lose_every`, the network loses one video packet in that many on the way to it.
    Its microphone hears a `tone` of its own."""

    def __init__(
        self,
        ws: ClientWebSocketResponse,
        shade: int,
        lose_every: int | None = None,
        tone: int = 500,
    ) -> None:
        super().__init__(ws, ToneMicrophone(tone), FlatCamera(shade))
        self.shade = shade
        # For each video m-line, whether the first packet after each pause (the first
        # ever included) began a keyframe: anything else would show a broken picture.
        self.starts_after_pauses: list[tuple[str, bool]] = []
        self._lose_every = lose_every
        self.retransmissions = 0
        # (publisher id, kind) -> frames decoded; video frames only if of the right shade.
        self.frames: Counter[tuple[str, str]] = Counter()
        self.wrong_pictures = 0
        # The size of every picture decoded, whoever sent it.
        self.picture_sizes: set[tuple[int, int]] = set()
        # Whose shade is which: filled in by the test's roster.
        self.shades: dict[str, int] = {}

    def received(self, publisher: str | None, frame: av.AudioFrame | av.VideoFrame) -> None:
        if publisher is None:
            return  # media may come just before the message saying whose it is
        if isinstance(frame, av.VideoFrame):
            self.picture_sizes.add((frame.width, frame.height))
            expected = self.shades.get(publisher)
            if expected is None or abs(mean_luma(frame) - expected) > 12:
                self.wrong_pictures += 1
            else:
                self.frames[(publisher, "video")] += 1
        elif loudness(frame) > 500:
            self.frames[(publisher, "audio")] += 1

    def watch(
        self, mid: str, transceiver: RTCRtpTransceiver, offer_sdp: str
    ) -> asyncio.Task[None] | None:
        if transceiver.kind == "video":
            retransmission_types = {int(pt) for pt in _RTX.findall(offer_sdp)}
            self._watch_packets(mid, transceiver.receiver, retransmission_types)
        return super().watch(mid, transceiver, offer_sdp)

    def _watch_packets(self, mid: str, receiver: Any, retransmission_types: set[int]) -> None:
        """Between the network and aiortc's receiver: note how each run of packets
        begins, and with `lose_every`, lose one packet in that many on the way
        (never a retransmission)."""
        receive = receiver._handle_rtp_packet
        arrived, last_at = 0, -1.0

        async def watched(packet: Any, arrival_time_ms: int) -> None:
            nonlocal arrived, last_at
            if packet.payload_type in retransmission_types:
                self.retransmissions += 1
            else:
                arrived += 1
                if self._lose_every and arrived % self._lose_every == 0:
                    return
                now = time.monotonic()
                if last_at < 0 or now - last_at > PAUSE_SECONDS:
                    self.starts_after_pauses.append((mid, begins_vp8_keyframe(packet.payload)))
                last_at = now
            await receive(packet, arrival_time_ms)

        receiver._handle_rtp_packet = watched

    async def receiving(self, seconds: float = 1.0) -> set[tuple[str, str]]:
        """What frames arrived from, over the next `seconds`."""
        before = Counter(self.frames)
        await asyncio.sleep(seconds)
        return {key for key, count in self.frames.items() if count > before[key]}


Join = Callable[..., Awaitable[MediaParticipant]]


BOTH = ("audio", "video")


@dataclass
class Three:
    host: MediaParticipant
    patient: MediaParticipant
    guest: MediaParticipant

    @property
    def everyone(self) -> list[MediaParticipant]:
        return [self.host, self.patient, self.guest]


async def enter(participant: MediaParticipant) -> None:
    answer = await participant.request("join_media")
    assert answer["type"] == "result", answer


async def three_in_conference(lobby: Lobby, join: Join, *, moderator: bool) -> Three:
    """Ada (host), Pat (patient) and Gail (public guest), in a started conference."""
    three = Three(
        await join(lobby.host_path, 50),
        await join(lobby.pat_path, 120),
        await join(lobby.public_path, 200, display_name="Gail Guest"),
    )
    host = three.host
    assert (await host.request("set_options", moderator=moderator, recording=False))[
        "type"
    ] == "result"
    assert (await host.request("start"))["type"] == "result"
    introduce(three.everyone)
    for participant in three.everyone:
        await enter(participant)
    return three


def introduce(people: list[MediaParticipant]) -> None:
    """Tell each peer whose picture is which shade, to check what it decodes."""
    shades = {p.id: p.shade for p in people}
    for participant in people:
        participant.shades = shades


def of(*who: tuple[MediaParticipant, tuple[str, ...]]) -> set[tuple[str, str]]:
    return {(participant.id, kind) for participant, kinds in who for kind in kinds}


async def receive_exactly(expected: dict[MediaParticipant, set[tuple[str, str]]]) -> None:
    """Each participant decodes media from exactly the expected publishers, kinds."""

    async def check() -> bool:
        for participant, wanted in expected.items():
            if await participant.receiving(1.0) != wanted:
                return False
        return True

    await wait_until(check)


async def real_answer(offer_sdp: str) -> str:
    """What an aiortc peer answers to the offer, receiving on every m-line."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()
