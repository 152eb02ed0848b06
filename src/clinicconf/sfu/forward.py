"""How a track travels from its publisher to its subscribers.

The room only ever does three things with media: it publishes a received track
(`Source`), gives each sending transceiver an `Outlet`, and points outlets at
sources (or at nothing), through a `Forwarding`. Two carry it: `PacketForwarding`
(passthrough/, the default) forwards packets as received; `TranscodingRelay`
(here, the setting `forwarding = "transcode"`, kept as the benchmark's baseline)
carries decoded frames: aiortc decodes each published track once,
and each subscriber's sender encodes what its outlet hands it. An outlet never ends,
so a subscriber's sender outlives every publisher it carries (aiortc's sender stops
for good when its track ends), and it keeps only the latest frame, so a subscriber
that falls behind loses frames, never memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Protocol

import av
from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError

from ..moderation import Kind

VIDEO_CLOCK_RATE = 90_000
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
# One clock for every published video: an outlet switched from one publisher to
# another never sees time go backwards.
_CLOCK_ORIGIN = time.monotonic()


class Source(Protocol):
    async def close(self) -> None: ...


class Outlet(Protocol):
    def connect(self, source: Source | None) -> None:
        """Carry `source` from now on; None carries nothing."""

    def close(self) -> None: ...


class Forwarding(Protocol):
    """A way of carrying tracks: the room's only view of media."""

    def publish(self, transceiver: RTCRtpTransceiver, kind: Kind) -> Source:
        """A track the page sends on `transceiver`, to be forwarded."""

    def subscribe(self, transceiver: RTCRtpTransceiver, kind: Kind) -> Outlet:
        """What the page receives on `transceiver`, connected to nothing yet."""


class RelaySource:
    """A published track, read without pause: a track nobody reads queues its
    frames without bound inside aiortc."""

    def __init__(self, track: MediaStreamTrack, kind: Kind) -> None:
        self.kind = kind
        self._track = track
        self._outlets: set[RelayOutlet] = set()
        self._pump = asyncio.create_task(self._run(), name=f"relay-{kind}")

    def add(self, outlet: RelayOutlet) -> None:
        self._outlets.add(outlet)

    def discard(self, outlet: RelayOutlet) -> None:
        self._outlets.discard(outlet)

    async def _run(self) -> None:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                frame.pts = round((time.monotonic() - _CLOCK_ORIGIN) * VIDEO_CLOCK_RATE)
                frame.time_base = _VIDEO_TIME_BASE
            elif not isinstance(frame, av.AudioFrame):
                continue  # a received track yields decoded frames only
            for outlet in self._outlets:
                outlet.put(frame)

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        for outlet in list(self._outlets):
            outlet.connect(None)


class RelayOutlet(MediaStreamTrack):
    """What one subscriber's sender encodes: the latest frame of the source it is
    connected to."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._source: RelaySource | None = None
        self._frame: av.VideoFrame | av.AudioFrame | None = None
        self._ready = asyncio.Event()
        # The audio encoder wants sample-exact timestamps, whatever the source.
        self._samples_sent = 0

    def connect(self, source: Source | None) -> None:
        assert source is None or isinstance(source, RelaySource)
        if source is self._source:
            return
        if self._source is not None:
            self._source.discard(self)
        self._source = source
        self._frame = None
        if source is not None:
            source.add(self)

    def put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self._frame = frame
        self._ready.set()

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        while self._frame is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        if isinstance(frame, av.AudioFrame):
            return self._restamped(frame)
        return frame

    def _restamped(self, frame: av.AudioFrame) -> av.AudioFrame:
        """A copy numbered on this outlet's own sample count: the frame itself is
        shared with every other subscriber of the source."""
        copy = av.AudioFrame(
            format=frame.format.name, layout=frame.layout.name, samples=frame.samples
        )
        for target, plane in zip(copy.planes, frame.planes, strict=True):
            # A decoder's plane may be longer than its samples (padding).
            target.update(bytes(memoryview(plane)[: target.buffer_size]))
        copy.sample_rate = frame.sample_rate
        copy.time_base = fractions.Fraction(1, frame.sample_rate)
        copy.pts = self._samples_sent
        self._samples_sent += frame.samples
        return copy

    def close(self) -> None:
        self.connect(None)
        self.stop()
        self._ready.set()  # a sender waiting in recv() ends


class TranscodingRelay:
    """Decoded-frame forwarding: one decode per publisher, one encode per subscriber."""

    def publish(self, transceiver: RTCRtpTransceiver, kind: Kind) -> Source:
        return RelaySource(transceiver.receiver.track, kind)

    def subscribe(self, transceiver: RTCRtpTransceiver, kind: Kind) -> Outlet:
        outlet = RelayOutlet(kind)
        transceiver.sender.replaceTrack(outlet)
        return outlet
