"""Media for the benchmarks' publishers: a 640x480 VP8 clip and an Opus tone,
encoded once with PyAV, then sent in a loop as already-encoded packets, so that a
hundred publishers cost the load process almost nothing and the server's share is
what is measured.

Two ways to send them: `camera` and `microphone` are tracks for aiortc's sender
(which only packetises an `av.Packet`); `packetize` makes RTP payloads of the clip
once, for a publisher that sends them itself (bench/participant.py's
`PacketParticipant`). A packetized clip has one keyframe, its first picture; what
loops is the delta pictures after it, never the keyframe again, so that a subscriber's
first picture comes from what the SFU does (replaying the keyframe it kept, asking
the publisher for a new one), not from a keyframe the clip happens to bring every
few seconds. (A decoder would show the loop's seam as a glitch; nothing decodes in
the benchmark.) The publisher sends the keyframe again only when asked, as a
browser's encoder does."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Final

import av
from aiortc import MediaStreamTrack
from aiortc.codecs.vpx import Vp8Encoder

WIDTH: Final = 640
HEIGHT: Final = 480
FRAMES_PER_SECOND: Final = 25
VIDEO_BITRATE: Final = 900_000
VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90_000)
SAMPLE_RATE: Final = 48_000
AUDIO_FRAME_SAMPLES: Final = 960  # 20 ms, Opus's usual frame
AUDIO_TIME_BASE: Final = fractions.Fraction(1, SAMPLE_RATE)
# The packetized clip's length: its one keyframe, then this many seconds of deltas.
PACKETIZED_SECONDS: Final = 10.0


def encode_video(seconds: float = 2.0) -> list[bytes]:
    """Bands of stripes shifting at random from frame to frame, as busy as a camera picture
    (about the bitrate a browser sends at 640x480), one keyframe first: the clip
    loops cleanly."""
    count = round(seconds * FRAMES_PER_SECOND)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate = VIDEO_BITRATE
    codec.time_base = fractions.Fraction(1, FRAMES_PER_SECOND)
    codec.gop_size = count  # only the first frame is a keyframe
    rate = str(VIDEO_BITRATE)  # constant bitrate, as a browser's encoder keeps it
    codec.options = {
        "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
        "minrate": rate, "maxrate": rate, "bufsize": rate,
    }  # fmt: skip
    pattern = bytes(range(256)) * 8
    shifts = random.Random(0)  # noqa: S311 (a picture, not a secret: the same on every run)
    packets: list[bytes] = []
    for number in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma = frame.planes[0]
        bands = [shifts.randrange(256) for _ in range(HEIGHT // 16)]
        rows = (pattern[bands[y // 16] + y :][: luma.line_size] for y in range(HEIGHT))
        luma.update(b"".join(rows))
        for chroma in frame.planes[1:]:
            chroma.update(bytes([128]) * chroma.buffer_size)
        frame.pts = number
        packets += [bytes(packet) for packet in codec.encode(frame)]
    packets += [bytes(packet) for packet in codec.encode(None)]
    return packets


def encode_audio(seconds: float = 1.0) -> list[bytes]:
    """A 440 Hz tone, in 20 ms Opus packets."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = SAMPLE_RATE, "mono", "s16"
    codec.bit_rate = 32_000
    packets: list[bytes] = []
    for number in range(round(seconds * SAMPLE_RATE / AUDIO_FRAME_SAMPLES)):
        first = number * AUDIO_FRAME_SAMPLES
        tone = array.array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * 440 * (first + i) / SAMPLE_RATE))
                for i in range(AUDIO_FRAME_SAMPLES)
            ),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(tone.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, first, AUDIO_TIME_BASE
        packets += [bytes(packet) for packet in codec.encode(frame)]
    return packets


class LoopedTrack(MediaStreamTrack):
    """Already-encoded packets, sent in a loop at their real pace."""

    def __init__(
        self, kind: str, packets: list[bytes], interval: float, time_base: fractions.Fraction
    ) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._time_base = time_base
        self._ticks = round(interval / time_base)
        self._sent = 0
        self._start = time.monotonic()

    async def recv(self) -> av.Packet[Any]:
        due = self._start + self._sent * self._interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        packet = av.Packet(self._packets[self._sent % len(self._packets)])
        packet.pts = self._sent * self._ticks
        packet.time_base = self._time_base
        self._sent += 1
        return packet


def camera(packets: list[bytes]) -> LoopedTrack:
    return LoopedTrack("video", packets, 1 / FRAMES_PER_SECOND, VIDEO_TIME_BASE)


def microphone(packets: list[bytes]) -> LoopedTrack:
    return LoopedTrack("audio", packets, AUDIO_FRAME_SAMPLES / SAMPLE_RATE, AUDIO_TIME_BASE)


@dataclass(frozen=True)
class Packets:
    """A clip as RTP payloads (RFC 7741 for VP8: each picture's packets, in order; one
    Opus frame a packet): its keyframe, the delta pictures to loop after it, and the
    sound to loop."""

    keyframe: tuple[bytes, ...]
    deltas: tuple[tuple[bytes, ...], ...]
    audio: tuple[bytes, ...]


def is_keyframe(frame: bytes) -> bool:
    """A VP8 frame's first bit is 0 for a keyframe (RFC 6386 section 9.1)."""
    return bool(frame) and not frame[0] & 0x01


def packetize(video: list[bytes], audio: list[bytes]) -> Packets:
    """`video`'s pictures as RTP payloads, packetized once, as aiortc's VP8 sender
    packetizes them (each with its own picture id); its first picture must be a
    keyframe. Keyframes after it are left out of the loop."""
    if not video or not is_keyframe(video[0]) or not audio:
        raise ValueError("a clip begins with a keyframe, and has sound")
    pictures = [
        tuple(Vp8Encoder._packetize(frame, number % 32768)) for number, frame in enumerate(video)
    ]
    deltas = tuple(
        p for frame, p in zip(video[1:], pictures[1:], strict=True) if not is_keyframe(frame)
    )
    return Packets(pictures[0], deltas or (pictures[0],), tuple(audio))


def encode_packets(seconds: float = PACKETIZED_SECONDS) -> Packets:
    """The benchmark's clip, packetized: one keyframe, then `seconds` of deltas."""
    return packetize(encode_video(seconds), encode_audio())
