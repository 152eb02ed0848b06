"""Forwarding packets: what a publisher sends is passed to each subscriber as
received, VP8 and Opus alike, never decoded or encoded again. Only the RTP header
changes per subscriber: its SSRC, payload type, sequence numbers and timestamps,
re-based whenever the subscriber starts receiving a new source, so that its
browser sees one continuous stream.

aiortc has no public API for any of this, so this module is the one place that
reaches into its internals (docs/research/aiortc-sfu.md, section 4), all of them
listed in `RELIED_ON` and checked by `verify_aiortc` at start-up and in the tests:

- a publisher's `RTCRtpReceiver._handle_rtp_packet` is replaced, on the instance,
  by `PacketSource._received`, which keeps what aiortc did before decoding (the
  statistics its receiver reports are sent from, RTX unwrapping, NACKs) and adds a
  bitrate cap to its REMB feedback, then forwards instead of decoding;
- a subscriber's `RTCRtpSender` is given a track that never yields, and
  `PacketOutlet` sends through its transport itself, writing each packet into the
  sender's own retransmission history (NACKs from the browser are answered with
  RTX by aiortc) and keeping its sender-report counters true. The sender's
  `_send_keyframe` (its answer to the browser's PLI or FIR) asks the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import secrets
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Final

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import RTCRtpTransceiver as Transceiver
from aiortc.clock import current_ntp_time
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)

from ..pictures import impossible_keyframe
from .forward import Source
from .router import Kind

log = logging.getLogger(__name__)

# A publisher is asked for a keyframe at most this often, however many ask; a
# subscriber that already has pictures is heard at most this often.
KEYFRAME_INTERVAL_SECONDS: Final = 1.0
SUBSCRIBER_KEYFRAME_SECONDS: Final = 3.0
# The least the REMB feedback asks of a camera, in bits per second.
BITRATE_FLOOR: Final = 150_000
# Further ahead than this, a sequence number means the publisher started over.
MAX_SEQUENCE_JUMP: Final = 1000
CLOCK_RATES: Final[dict[Kind, int]] = {"audio": 48_000, "video": 90_000}

# What this module uses of aiortc that is not its public API: attributes on a fresh
# receiver and sender of a negotiated transceiver.
RELIED_ON: Final = {
    "RTCRtpReceiver": (
        "_enabled",
        "_handle_rtp_packet",
        "_send_rtcp",
        "_send_rtcp_nack",
        "_send_rtcp_pli",
        "_RTCRtpReceiver__codecs",
        "_RTCRtpReceiver__nack_generator",
        "_RTCRtpReceiver__remote_bitrate_estimator",
        "_RTCRtpReceiver__remote_streams",
        "_RTCRtpReceiver__rtcp_ssrc",
        "_RTCRtpReceiver__rtx_ssrc",
    ),
    "RTCRtpSender": (
        "_ssrc",
        "_handle_rtcp_packet",
        "_retransmit",
        "_send_keyframe",
        "_RTCRtpSender__mid",
        "_RTCRtpSender__rtp_history",
        "_RTCRtpSender__rtp_header_extensions_map",
        "_RTCRtpSender__ntp_timestamp",
        "_RTCRtpSender__rtp_timestamp",
        "_RTCRtpSender__packet_count",
        "_RTCRtpSender__octet_count",
    ),
    "RTCRtpTransceiver": ("_codecs",),
    "RTCDtlsTransport": ("_send_rtp",),
}
# The replaced method is called by the DTLS transport with these arguments.
_HANDLER_PARAMETERS: Final = ("self", "packet", "arrival_time_ms")


class AiortcChanged(RuntimeError):
    """The installed aiortc is not the one this module was written against."""


async def verify_aiortc() -> None:
    """Fail loudly, naming what is missing, if aiortc no longer has what this module
    relies on (an upgrade past the pinned range)."""
    parameters = tuple(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters)
    missing = [] if parameters == _HANDLER_PARAMETERS else ["_handle_rtp_packet(packet, ...)"]
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video")
        objects: dict[str, Any] = {
            "RTCRtpReceiver": transceiver.receiver,
            "RTCRtpSender": transceiver.sender,
            "RTCRtpTransceiver": transceiver,
            "RTCDtlsTransport": transceiver.sender.transport,
        }
        for owner, names in RELIED_ON.items():
            missing += [f"{owner}.{n}" for n in names if not hasattr(objects[owner], n)]
    finally:
        await pc.close()
    if missing:
        raise AiortcChanged(
            "packet forwarding does not work with this aiortc (missing: "
            + ", ".join(missing)
            + '); use forwarding = "transcode", or the aiortc version in pyproject.toml'
        )


def keyframe_start(payload: bytes) -> bytes | None:
    """The start of the VP8 frame when the packet is the first of a keyframe (RFC
    7741: S=1, partition 0, P bit 0); None for any other packet."""
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return None
    if descriptor.partition_start == 1 and descriptor.partition_id == 0 and rest:
        return None if rest[0] & 0x01 else rest
    return None


def newer(a: int, b: int) -> bool:
    """Sequence number a comes after b (16 bits, wrapping)."""
    return a != b and (a - b) & 0xFFFF < 0x8000


class PacketSink(ABC):
    """What a source hands its packets to, one source at a time: a subscriber's
    outlet, or a recorded track."""

    _source: PacketSource | None = None
    # The bitrate this consumer can take (REMB), if it says.
    remb: int | None = None
    # A recorded track judges each picture itself (it ends at an impossible one and
    # notes why); a browser is never sent one (PacketSource._take).
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
    async def forward(self, packet: RtpPacket, keyframe: bool, ntp_now: int) -> None: ...

    @abstractmethod
    def failed(self, exc: Exception) -> None:
        """`forward` raised: the others go on."""


class PacketSource:
    """A publisher's track, forwarded packet by packet."""

    def __init__(self, transceiver: Transceiver, kind: Kind, bitrate_cap: int) -> None:
        self.kind = kind
        self._receiver: RTCRtpReceiver = transceiver.receiver
        self._bitrate_cap = bitrate_cap
        self._outlets: set[PacketSink] = set()
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
        self._failures = 0
        self._receiver._handle_rtp_packet = self._received  # type: ignore[method-assign]

    def add(self, outlet: PacketSink) -> None:
        self._outlets.add(outlet)

    def discard(self, outlet: PacketSink) -> None:
        self._outlets.discard(outlet)

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

    async def _received(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # Called from the publisher's DTLS receive loop: anything raised here would
        # end the publisher's connection.
        try:
            await self._take(packet, arrival_time_ms)
        except Exception:
            self._failures += 1
            if self._failures == 1:
                log.exception("a published packet could not be handled")

    async def _take(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """What aiortc's receiver does with a packet before it depayloads and decodes
        it, then forwarding instead."""
        receiver = self._receiver
        if not receiver._enabled:
            return
        codec = receiver._RTCRtpReceiver__codecs.get(packet.payload_type)  # type: ignore[attr-defined]
        if codec is None or not self._expected(packet.ssrc, codec):
            return
        await self._estimate_bitrate(packet, arrival_time_ms)
        streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)  # the receiver reports from these
        if is_rtx(codec):
            media_ssrc = receiver._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)  # type: ignore[attr-defined]
            apt = codec.parameters.get("apt")
            if media_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int):
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=media_ssrc)
        nacks = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        if nacks is not None and nacks.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nacks.missing))
        if not packet.payload:
            return  # padding, for bandwidth probing
        self._media_ssrc = packet.ssrc
        newest = self._newest_seq is None or newer(packet.sequence_number, self._newest_seq)
        if newest:
            self._newest_seq = packet.sequence_number
        start = keyframe_start(packet.payload) if self.kind == "video" else None
        impossible = None if start is None else impossible_keyframe(start)
        # A keyframe's start that comes late (a retransmission) starts nobody's picture,
        # and changes nothing withheld; an impossible one is never forwarded, late or
        # not: it would still complete the picture in the browser.
        keyframe = newest and start is not None
        if keyframe:
            self._judge(impossible)
        withheld = self._withheld is not None or impossible is not None
        now = current_ntp_time()  # once for every subscriber: it costs a datetime
        for outlet in list(self._outlets):
            if withheld and not outlet.judges_pictures:
                continue
            try:
                await outlet.forward(packet, keyframe, now)
            except Exception as exc:  # one subscriber's trouble is nobody else's
                outlet.failed(exc)

    def _judge(self, why: str | None) -> None:
        """Withhold the picture the newest keyframe starts, if `why` it is impossible,
        and ask for another: one keyframe claiming 16383x16383 would cost every
        browser receiving it hundreds of megabytes."""
        if why is not None:
            if self._withheld is None:
                log.warning("a published video is withheld from its subscribers: %s", why)
            self.request_keyframe()
        self._withheld = why

    def _expected(self, ssrc: int, codec: Any) -> bool:
        """Only the stream the SDP declared (or, without one, the first seen): other
        SSRCs on the same payload type would each grow the receiver's statistics."""
        declared = self._receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        if declared:  # retransmission SSRC -> media SSRC
            return ssrc in declared or ssrc in declared.values()
        if is_rtx(codec):
            return False
        if self._latched_ssrc is None:
            self._latched_ssrc = ssrc
        return ssrc == self._latched_ssrc

    async def _estimate_bitrate(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """aiortc's estimate of what the path carries, sent back as REMB: no more than
        the slowest subscriber reports it can take, nor than the cap; no less than a
        floor (the estimate reads a busy server as a congested network)."""
        receiver = self._receiver
        estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if estimator is None or rtcp_ssrc is None or packet.extensions.abs_send_time is None:
            return
        estimate = estimator.add(
            abs_send_time=packet.extensions.abs_send_time,
            arrival_time_ms=arrival_time_ms,
            payload_size=len(packet.payload) + packet.padding_size,
            ssrc=packet.ssrc,
        )
        if estimate is None:
            return
        bitrate, ssrcs = estimate
        slowest = min((o.remb for o in self._outlets if o.remb is not None), default=bitrate)
        bitrate = min(self._bitrate_cap, max(BITRATE_FLOOR, min(bitrate, slowest)))
        remb = pack_remb_fci(bitrate, ssrcs)
        await receiver._send_rtcp(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=remb)
        )

    async def close(self) -> None:
        if self._keyframe_request is not None:
            self._keyframe_request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keyframe_request
        for outlet in list(self._outlets):
            outlet.connect(None)


class _ParkedTrack(MediaStreamTrack):
    """Keeps a sender's own loop waiting, at no cost: the outlet sends instead."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("a parked track yields nothing")


class PacketOutlet(PacketSink):
    """One subscriber's sending m-line, fed packets of the source it is connected to."""

    def __init__(self, transceiver: Transceiver, kind: Kind) -> None:
        self._transceiver = transceiver
        self._sender: RTCRtpSender = transceiver.sender
        self._kind = kind
        self._clock_rate = CLOCK_RATES[kind]
        self._source: PacketSource | None = None
        self._sender.replaceTrack(_ParkedTrack(kind))
        self._sender._send_keyframe = self._keyframe_wanted  # type: ignore[method-assign]
        self._sender_feedback = self._sender._handle_rtcp_packet
        self._sender._handle_rtcp_packet = self._feedback  # type: ignore[method-assign]
        # `remb`: the subscriber's own bandwidth estimate, for the publisher's bitrate.
        # From the next packet on, the stream is re-based (on a keyframe, for video).
        self._rebase = True
        self._waiting_since = 0.0
        self._keyframe_wanted_at = -math.inf
        self._seq_offset = 0
        self._ts_offset = 0
        # The source's sequence numbers, unwrapped (counting past 65535), since the
        # re-base: its first, and its newest.
        self._source_ssrc: int | None = None
        self._first = self._newest = 0
        # A start below 2^15, as aiortc's own: a browser's SRTP guesses the rollover
        # counter wrong if the first packets across a wrap are lost.
        self._next_seq = secrets.randbelow(1 << 15)
        self._last_ts: int | None = None
        self._last_sent_at = 0.0
        self._failed = False

    def _restart(self) -> None:
        """Begin again from the source's next keyframe, asked for now."""
        self._rebase = True
        self._waiting_since = time.monotonic()
        if self._source is not None:
            self._source.request_keyframe()

    def _still_waiting(self) -> None:
        """A keyframe asked for may have come before this m-line was negotiated, or
        been lost: ask again, once a second, until one comes."""
        now = time.monotonic()
        if self._source is not None and now - self._waiting_since > KEYFRAME_INTERVAL_SECONDS:
            self._waiting_since = now
            self._source.request_keyframe()

    def _keyframe_wanted(self) -> None:
        """The subscriber's decoder asks for a keyframe (PLI or FIR). One on a poor
        link asks often: while it has pictures, it is heard once in a while, since
        every keyframe loads the publisher and every other subscriber."""
        now = time.monotonic()
        if self._source is None:
            return
        if self._rebase or now - self._keyframe_wanted_at >= SUBSCRIBER_KEYFRAME_SECONDS:
            self._keyframe_wanted_at = now
            self._source.request_keyframe()

    async def _feedback(self, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                self.remb = unpack_remb_fci(packet.fci)[0]
        await self._sender_feedback(packet)

    def failed(self, exc: Exception) -> None:
        """Forwarding to this subscriber raised: start again from a keyframe."""
        if not self._failed:
            self._failed = True
            log.warning("forwarding to a subscriber failed: %s", type(exc).__name__)
        self._restart()

    def _unwrap(self, sequence_number: int) -> int:
        return self._newest + ((sequence_number - self._newest + 0x8000) & 0xFFFF) - 0x8000

    async def forward(self, packet: RtpPacket, keyframe: bool, ntp_now: int) -> None:
        sender = self._sender
        mid = sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        payload_type = self._transceiver._codecs[0].payloadType if mid is not None else None
        if payload_type is None:
            return  # not negotiated yet
        if not self._rebase:
            extended = self._unwrap(packet.sequence_number)
            if packet.ssrc != self._source_ssrc or extended - self._newest > MAX_SEQUENCE_JUMP:
                self._restart()  # the publisher started a new stream
            elif extended < self._first:
                return  # from before the stream was re-based
        if self._rebase:
            if self._kind == "video" and not keyframe:
                self._still_waiting()
                return  # a picture that would not decode: wait for the keyframe
            self._rebase_on(packet)
            extended = self._newest  # the re-based stream's first packet
        sequence_number = (packet.sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        out = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=sender._ssrc,
            payload=packet.payload,
        )
        out.extensions.mid = mid
        out.extensions.abs_send_time = (ntp_now >> 14) & 0x00FFFFFF
        out.extensions.audio_level = packet.extensions.audio_level
        sender._RTCRtpSender__rtp_history[sequence_number % RTP_HISTORY_SIZE] = out  # type: ignore[attr-defined]
        try:
            await sender.transport._send_rtp(
                out.serialize(sender._RTCRtpSender__rtp_header_extensions_map)  # type: ignore[attr-defined]
            )
        except ConnectionError:
            # The subscriber's connection is not up (yet, or any more): start again
            # from a keyframe once it is.
            self._restart()
            return
        if extended < self._newest:
            return  # a late packet: the stream's timing stays that of the newest
        self._newest = extended
        self._next_seq = (sequence_number + 1) & 0xFFFF
        self._last_ts, self._last_sent_at = timestamp, time.monotonic()
        # What the sender's reports say (an RTP time against a wall-clock time).
        sender._RTCRtpSender__ntp_timestamp = ntp_now  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]

    def _rebase_on(self, packet: RtpPacket) -> None:
        """The new stream goes on from where the subscriber's last one stopped: the
        next sequence number, and a timestamp as much later as time has passed."""
        self._rebase = False
        if self._last_ts is None:
            timestamp = packet.timestamp
        else:
            elapsed = round((time.monotonic() - self._last_sent_at) * self._clock_rate)
            timestamp = self._last_ts + max(1, elapsed)
        self._ts_offset = (timestamp - packet.timestamp) & 0xFFFFFFFF
        self._seq_offset = (self._next_seq - packet.sequence_number) & 0xFFFF
        self._source_ssrc = packet.ssrc
        self._first = self._newest = packet.sequence_number

    def close(self) -> None:
        self.connect(None)


class PacketForwarding:
    """Forwarding without decoding or encoding (the default)."""

    def __init__(self, bitrate_cap: int) -> None:
        self._bitrate_cap = bitrate_cap

    def publish(self, transceiver: Transceiver, kind: Kind) -> PacketSource:
        return PacketSource(transceiver, kind, self._bitrate_cap)

    def subscribe(self, transceiver: Transceiver, kind: Kind) -> PacketOutlet:
        return PacketOutlet(transceiver, kind)
