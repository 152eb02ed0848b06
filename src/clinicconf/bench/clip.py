"""Media for the benchmarks' publishers: a 640x480 VP8 clip and an Opus tone,
encoded once with PyAV, then sent in a loop as already-encoded packets (aiortc's
sender only packetises an `av.Packet`), so that a hundred publishers cost the load
process almost nothing and the server's share is what is measured."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import random
import time
from typing import Any, Final

import av
from aiortc import MediaStreamTrack

WIDTH: Final = 640
HEIGHT: Final = 480
FRAMES_PER_SECOND: Final = 25
VIDEO_BITRATE: Final = 900_000
VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90_000)
SAMPLE_RATE: Final = 48_000
AUDIO_FRAME_SAMPLES: Final = 960  # 20 ms, Opus's usual frame
AUDIO_TIME_BASE: Final = fractions.Fraction(1, SAMPLE_RATE)


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
