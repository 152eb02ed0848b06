"""A publisher's track on the fast path: its packets taken from the connection as
they arrive, handled as aiortc's receiver would before decoding (statistics, RTX
unwrapping, NACKs), and handed to each of its sinks (subscribers' outlets, recorded
tracks). A video source keeps its latest whole keyframe for new subscribers, withholds
pictures no decoder should allocate for, asks the publisher for keyframes at most once
a second, and says the bitrate cap by REMB feedback once a second.

This module reaches into aiortc's `RTCRtpReceiver` for its tables, its NACK generator
and its receive handler, which it replaces (`RELIED_ON`, checked by `verify_aiortc`
at start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Final

from aiortc import RTCRtpReceiver
from aiortc import RTCRtpTransceiver as Transceiver
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from ...moderation import Kind
from ...pictures import impossible_keyframe
from ..forward import Source
from .rtp import Received, keyframe_start, newer, ntp_now
from .wire import Wire

log = logging.getLogger(__name__)

# A publisher is asked for a keyframe at most this often, however many ask.
KEYFRAME_INTERVAL_SECONDS: Final = 1.0
# The least the REMB feedback asks of a camera, in bits per second, and how often it
# is sent.
BITRATE_FLOOR: Final = 150_000
REMB_INTERVAL_SECONDS: Final = 1.0
# A kept keyframe is replayed to a new subscriber while it is this recent; a larger
# one is not kept (a 640x480 keyframe is 10-60 kB; 1080p about 200 kB).
KEPT_KEYFRAME_SECONDS: Final = 20.0
KEPT_KEYFRAME_BYTES: Final = 400_000
# A 400 kB keyframe comes in about 350 packets: more is a publisher sending crumbs.
KEPT_KEYFRAME_PACKETS: Final = 1000

# What this module uses of aiortc that is not its public API: attributes of a fresh
# receiver of a negotiated transceiver, and of the transceiver.
RELIED_ON: Final = {
    "RTCRtpReceiver": (
        "_enabled",
        "_handle_rtp_packet",
        "_send_rtcp_pli",
        "_RTCRtpReceiver__codecs",
        "_RTCRtpReceiver__nack_generator",
        "_RTCRtpReceiver__remote_streams",
        "_RTCRtpReceiver__rtcp_ssrc",
        "_RTCRtpReceiver__rtx_ssrc",
    ),
    "RTCRtpTransceiver": ("_codecs",),
}
# The receiver's handler replaced here is called by the DTLS transport with these
# arguments.
HANDLER_PARAMETERS: Final = ("self", "packet", "arrival_time_ms")


class PacketSink(ABC):
    """What a source hands its packets to, one source at a time: a subscriber's
    outlet, or a recorded track."""

    _source: PacketSource | None = None
    # The bitrate this consumer can take (REMB), if it says.
    remb: int | None = None
    # A recorded track judges each picture itself (it ends at an impossible one and
    # notes why); a browser is never sent one (PacketSource._received_packet).
    judges_pictures: ClassVar[bool] = False

    def connect(self, source: Source | None) -> None:
        """Take `source`'s packets from now on, starting anew; None: nobody's."""
        assert source is None or isinstance(source, PacketSource)
        if source is self._source:
            return
        if self._source is not None:
            self._source.discard(self)
        self._source = source
        self._restart()
        if source is not None:
            source.add(self)

    @abstractmethod
    def _restart(self) -> None:
        """What comes next is a new stream (its first keyframe is asked for)."""

    @abstractmethod
    def forward(self, packet: Received, keyframe: bool, ntp: int) -> None:
        """One packet of the source; `keyframe` when it starts one, `ntp` the time
        it arrived (ntp_now)."""

    @abstractmethod
    def failed(self, exc: Exception) -> None:
        """`forward` raised: the others go on."""


class PacketSource:
    """A publisher's track, forwarded packet by packet."""

    def __init__(self, transceiver: Transceiver, kind: Kind, bitrate_cap: int) -> None:
        self.kind = kind
        self._receiver: RTCRtpReceiver = transceiver.receiver
        self._bitrate_cap = bitrate_cap
        self._sinks: tuple[PacketSink, ...] = ()
        # The SSRC of the media (not of its retransmissions), for keyframe requests.
        self._media_ssrc: int | None = None
        # Without SSRCs in the SDP, the first one seen is the stream.
        self._latched_ssrc: int | None = None
        self._newest_seq: int | None = None
        # Why the picture under way is withheld from the subscribers: its keyframe
        # claimed a size no decoder should allocate for (pictures.py). Until the next
        # keyframe, which is asked for.
        self._withheld: str | None = None
        self._keyframe_asked_at = -math.inf
        self._keyframe_request: asyncio.Task[None] | None = None
        self._remb_sent_at = -math.inf
        # The newest whole keyframe (its packets in order) and when it came; the
        # packets of one still coming in:
        self._kept: tuple[Received, ...] = ()
        self._kept_at = -math.inf
        # Sequence number -> packet, the keyframe's first first; where it ends (its
        # marker), and its size so far.
        self._keeping: dict[int, Received] = {}
        self._keeping_end: int | None = None
        self._keeping_bytes = 0
        # The receiver's own tables, filled in when its connection is up.
        receiver = self._receiver
        self._codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._declared: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        # Payload type -> whether it is RTX, as met.
        self._retransmissions: dict[int, bool] = {}
        self._wire = Wire.of(transceiver.receiver.transport)
        # The sound level's extension id, for audio: read once aiortc has configured
        # the connection's extensions, which it does only once the connection is up.
        self._audio_level_id = 0
        # Negotiated: the receiver itself learns them only once the connection is up.
        for codec in transceiver._codecs:
            if codec.payloadType is not None:
                self._wire.route(codec.payloadType, self._received)
        # What aiortc still delivers: the packets queued before the fast path took over.
        self._receiver._handle_rtp_packet = self._handed_by_aiortc  # type: ignore[method-assign]

    def add(self, sink: PacketSink) -> None:
        self._sinks = (*self._sinks, sink)

    def discard(self, sink: PacketSink) -> None:
        self._sinks = tuple(s for s in self._sinks if s is not sink)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: now, or when a second has passed since
        the last time it was asked."""
        if self.kind != "video":
            return
        if self._keyframe_request is None or self._keyframe_request.done():
            self._keyframe_request = asyncio.create_task(self._ask_keyframe(), name="peer-pli")

    async def _ask_keyframe(self) -> None:
        wait = self._keyframe_asked_at + KEYFRAME_INTERVAL_SECONDS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._media_ssrc is not None:  # nothing has come yet: the first is a keyframe
            self._keyframe_asked_at = time.monotonic()
            await self._receiver._send_rtcp_pli(self._media_ssrc)

    def kept_keyframe(self) -> tuple[Received, ...]:
        """The newest whole keyframe's packets, if it is recent; () if none is."""
        if self._withheld is None and time.monotonic() - self._kept_at <= KEPT_KEYFRAME_SECONDS:
            return self._kept
        return ()

    async def _handed_by_aiortc(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self._received_packet(Received.of(packet))

    def _received(self, data: bytes) -> None:
        if self.kind == "audio" and not self._audio_level_id:
            self._audio_level_id = self._wire.header_extensions.audio_level or 0
        try:
            packet = Received.parse(data, self._audio_level_id)
        except ValueError:
            return
        self._received_packet(packet)

    def _received_packet(self, packet: Received) -> None:
        """What aiortc's receiver does with a packet before it depayloads and decodes
        it, then forwarding instead."""
        receiver = self._receiver
        if not receiver._enabled:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None or not self._expected(packet.ssrc, codec):
            return
        retransmitted = self._retransmissions.get(packet.payload_type)
        if retransmitted is None:
            retransmitted = self._retransmissions[packet.payload_type] = is_rtx(codec)
        streams = self._streams
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        # The receiver reports from these (they read a packet's sequence number and time).
        streams[packet.ssrc].add(packet)  # type: ignore[arg-type]
        if retransmitted:
            media_ssrc = self._declared.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if media_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int):
                return
            payload = packet.payload
            original = (payload[0] << 8) | payload[1]
            packet = Received(packet.marker, apt, original, packet.timestamp, media_ssrc,
                              payload[2:], packet.audio_level)  # fmt: skip
        nacks = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        if nacks is not None and nacks.add(packet):
            self._send_nack(packet.ssrc, sorted(nacks.missing))
        if not packet.payload:
            return  # padding, for bandwidth probing
        self._media_ssrc = packet.ssrc
        newest = self._newest_seq is None or newer(packet.sequence_number, self._newest_seq)
        if newest:
            self._newest_seq = packet.sequence_number
        keyframe = False
        withheld = self._withheld is not None
        if self.kind == "video":
            self._remb_now_and_then(packet.ssrc)
            start = keyframe_start(packet.payload)
            impossible = None if start is None else impossible_keyframe(start)
            # A keyframe's start that comes late (a retransmission) starts nobody's
            # picture, and changes nothing withheld; an impossible one is never
            # forwarded, late or not: it would still complete the picture in the browser.
            keyframe = newest and start is not None
            if keyframe:
                self._judge(impossible)
            withheld = self._withheld is not None or impossible is not None
            if not withheld:
                self._keep(packet, keyframe)
        now = ntp_now()  # once for every subscriber
        for sink in self._sinks:
            if withheld and not sink.judges_pictures:
                continue
            try:
                sink.forward(packet, keyframe, now)
            except Exception as exc:  # one subscriber's trouble is nobody else's
                sink.failed(exc)

    def _judge(self, why: str | None) -> None:
        """Withhold the picture the newest keyframe starts, if `why` it is impossible,
        and ask for another: one keyframe claiming 16383x16383 would cost every
        browser receiving it hundreds of megabytes."""
        if why is not None:
            if self._withheld is None:
                log.warning("a published video is withheld from its subscribers: %s", why)
            self.request_keyframe()
        self._withheld = why

    def _keep(self, packet: Received, keyframe: bool) -> None:
        """Gather a keyframe's packets (one timestamp, from its start to its marker,
        a lost one filled in by its retransmission) and keep it once whole; one too
        large, in bytes or packets, is given up, and the one kept before stays."""
        keeping = self._keeping
        if keyframe:
            keeping.clear()
            self._keeping_end = None
            self._keeping_bytes = 0
        elif not keeping or packet.timestamp != next(iter(keeping.values())).timestamp:
            return
        if packet.sequence_number not in keeping:
            self._keeping_bytes += len(packet.payload)
        keeping[packet.sequence_number] = packet
        if packet.marker:
            self._keeping_end = packet.sequence_number
        if self._keeping_bytes > KEPT_KEYFRAME_BYTES or len(keeping) > KEPT_KEYFRAME_PACKETS:
            keeping.clear()
            return
        first = next(iter(keeping))
        end = self._keeping_end
        if end is None or (end - first) & 0xFFFF != len(keeping) - 1:
            return
        whole = [keeping.get((first + n) & 0xFFFF) for n in range(len(keeping))]
        if all(whole):
            self._kept, self._kept_at = tuple(p for p in whole if p), time.monotonic()
            keeping.clear()

    def _expected(self, ssrc: int, codec: Any) -> bool:
        """Only the stream the SDP declared (or, without one, the first seen): other
        SSRCs on the same payload type would each grow the receiver's statistics."""
        declared = self._declared
        if declared:  # retransmission SSRC -> media SSRC
            return ssrc in declared or ssrc in declared.values()
        if is_rtx(codec):
            return False
        if self._latched_ssrc is None:
            self._latched_ssrc = ssrc
        return ssrc == self._latched_ssrc

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is None:
            return
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=rtcp_ssrc, media_ssrc=media_ssrc)
        nack.lost = lost
        with contextlib.suppress(ConnectionError):
            self._wire.send_rtcp(bytes(nack))

    def _remb_now_and_then(self, media_ssrc: int) -> None:
        """Once a second, REMB feedback: the cap, or less if the slowest subscriber
        says it takes less, never under a floor. (aiortc estimated the path on every
        packet, and read a busy server as a congested network.)"""
        now = time.monotonic()
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if now - self._remb_sent_at < REMB_INTERVAL_SECONDS or rtcp_ssrc is None:
            return
        self._remb_sent_at = now
        slowest = min((s.remb for s in self._sinks if s.remb is not None), default=None)
        bitrate = self._bitrate_cap if slowest is None else min(self._bitrate_cap, slowest)
        fci = pack_remb_fci(max(BITRATE_FLOOR, bitrate), [media_ssrc])
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
        with contextlib.suppress(ConnectionError):
            self._wire.send_rtcp(bytes(remb))

    async def close(self) -> None:
        if self._keyframe_request is not None:
            self._keyframe_request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keyframe_request
        for sink in self._sinks:
            sink.connect(None)
