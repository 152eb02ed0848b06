"""The SFU benchmarks' participants (bench/sfu.py's and bench/soak.py's): each sends
the clip and counts and times what it receives, decoding nothing, and notes in a
shared `SendLog` what it sent and when, so that a subscriber can tell how long the
server took to forward it."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import aiohttp

from . import clip
from .participant import Line, PacketParticipant

# How long everyone is given to receive a video from everyone else.
EVERYONE_RECEIVES_SECONDS: Final = 30.0
# Latency samples kept per participant between two readings.
MAX_SAMPLES: Final = 100_000
# A payload's last bytes tell it from the clip's others (each packet of the clip is
# different); a subscriber looks up when its publisher sent it.
_TAIL: Final = 24


class SendLog:
    """When each publisher sent each video payload, by its last bytes; the pictures
    each sent; when each asked to join media."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[bytes, float]] = {}
        self.frames: dict[str, int] = {}  # pictures sent, by publisher
        self.joined: dict[str, float] = {}  # time.monotonic() of its join_media


_packetized: list[tuple[tuple[list[bytes], list[bytes]], clip.Packets]] = []


def _packets_of(media: clip.Packets | tuple[list[bytes], list[bytes]]) -> clip.Packets:
    """Encoded frames (video, audio) packetized once for everyone they are given to."""
    if isinstance(media, clip.Packets):
        return media
    for known, packets in _packetized:
        if known[0] is media[0] and known[1] is media[1]:
            return packets
    packets = clip.packetize(*media)
    _packetized[:] = [(media, packets)]
    return packets


class CountingParticipant(PacketParticipant):
    """Sends the clip; counts and times what it receives, decoding nothing. `others`:
    how many publishers it is to receive."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse,
        media: clip.Packets | tuple[list[bytes], list[bytes]], log: SendLog, others: int,
    ) -> None:  # fmt: skip
        super().__init__(ws, _packets_of(media))
        self._log = log
        self._others = others
        self.latencies: list[float] = []
        self.joined_at = 0.0
        self.first_video: dict[str, float] = {}  # publisher -> seconds after joining
        self.first_arrival: dict[str, float] = {}  # publisher -> time.monotonic()
        self.receives_everyone = asyncio.Event()
        self._sent: dict[bytes, float] | None = None
        self._name = ""

    def sent_picture(self, payloads: tuple[bytes, ...]) -> None:
        if self._sent is None:
            self._name = self.id
            self._sent = self._log.sent.setdefault(self._name, {})
        sent, now = self._sent, time.monotonic()
        for payload in payloads:
            sent[payload[-_TAIL:]] = now
        frames = self._log.frames
        frames[self._name] = frames.get(self._name, 0) + 1

    def first_video_packet(self, line: Line) -> None:
        publisher = line.publisher
        if publisher is None or publisher in self.first_arrival:
            return
        self.first_arrival[publisher] = line.first_at
        self.first_video[publisher] = line.first_at - self.joined_at
        if len(self.first_video) >= self._others:
            self.receives_everyone.set()

    def sampled(self, line: Line, packet: bytes) -> None:
        if line.publisher is None or len(self.latencies) >= MAX_SAMPLES:
            return
        sent = self._log.sent.get(line.publisher, {}).get(packet[-_TAIL:])
        if sent is not None:
            self.latencies.append(time.monotonic() - sent)
