"""Forwarding packets: what a publisher sends is passed to each subscriber as
received, VP8 and Opus alike, never decoded or encoded again. Only the RTP header
changes per subscriber: its SSRC, payload type, sequence numbers and timestamps,
re-based whenever the subscriber starts receiving a new source, so that its
browser sees one continuous stream.

It is the server's fast path, one packet in and one per subscriber out, with no
await between them: a published packet is decrypted and parsed once, as it arrives
(`Wire`, below aiortc's receive loop); each subscriber's copy is its own header,
written in place (`Header`), and the same payload, encrypted with that subscriber's
SRTP session and sent on its nominated candidate pair at once. A video source keeps
its latest keyframe, so that a new subscriber has a first picture at once (replayed
with its header rewritten) while a fresh one is asked for.

aiortc has no public API for any of this, so this module is the one place that
reaches into its internals (docs/research/aiortc-sfu.md, section 4), all of them
listed in `RELIED_ON` and checked by `verify_aiortc` at start-up and in the tests
(sfu/ice.py does the same for aioice's):

- a publisher's media is taken from its connection before aiortc queues it; what
  aiortc's receiver did before decoding is kept (the statistics its receiver reports
  are sent from, RTX unwrapping, NACKs), and its REMB feedback says the bitrate cap
  (no more than the slowest subscriber takes) once a second instead of estimating
  the path on every packet;
- a subscriber's `RTCRtpSender` is given a track that never yields, and
  `PacketOutlet` sends in its place, keeping the sender's retransmission history
  (NACKs from the browser are answered with RTX by aiortc); its sender reports go
  with the connection's others in one packet, instead of its own RTCP loop. The
  sender's `_send_keyframe` (its answer to the browser's PLI or FIR) asks the
  publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import secrets
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Final

import pylibsrtp
from aiortc import (
    MediaStreamTrack,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc import RTCRtpTransceiver as Transceiver
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
)

from ..moderation import Kind
from ..pictures import impossible_keyframe
from . import ice
from .forward import Source

log = logging.getLogger(__name__)

# A publisher is asked for a keyframe at most this often, however many ask; a
# subscriber that already has pictures is heard at most this often.
KEYFRAME_INTERVAL_SECONDS: Final = 1.0
SUBSCRIBER_KEYFRAME_SECONDS: Final = 3.0
# The least the REMB feedback asks of a camera, in bits per second, and how often it
# is sent.
BITRATE_FLOOR: Final = 150_000
REMB_INTERVAL_SECONDS: Final = 1.0
# How often a connection's sender reports go, and how many share a compound packet
# (an SDES packet has room for 31 sources).
SENDER_REPORT_SECONDS: Final = 1.0
REPORTS_PER_PACKET: Final = 15
# Further ahead than this, a sequence number means the publisher started over.
MAX_SEQUENCE_JUMP: Final = 1000
CLOCK_RATES: Final[dict[Kind, int]] = {"audio": 48_000, "video": 90_000}
# A kept keyframe is replayed to a new subscriber while it is this recent; a larger
# one is not kept (a 640x480 keyframe is 10-60 kB; 1080p about 200 kB).
KEPT_KEYFRAME_SECONDS: Final = 20.0
KEPT_KEYFRAME_BYTES: Final = 400_000
# A 400 kB keyframe comes in about 350 packets: more is a publisher sending crumbs.
KEPT_KEYFRAME_PACKETS: Final = 1000
# Seconds between 1900 (NTP's epoch) and 1970 (time.time's).
_NTP_EPOCH_OFFSET: Final = 2_208_988_800
_RTP_HEADER: Final = struct.Struct("!BBHII")
_EXTENSION_HEADER: Final = struct.Struct("!HH")
_SEQUENCE_AND_TIME: Final = struct.Struct("!HI")
_WORD: Final = struct.Struct("!I")
_ONE_BYTE_EXTENSIONS: Final = 0xBEDE
_TWO_BYTE_EXTENSIONS: Final = 0x1000  # its low four bits are the application's
# Where a DTLS transport keeps its Wire.
_WIRE: Final = "_clinicconf_wire"

# What this module uses of aiortc that is not its public API: attributes on a fresh
# receiver and sender of a negotiated transceiver, and on their transports.
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
    "RTCRtpSender": (
        "_ssrc",
        "_handle_rtcp_packet",
        "_retransmit",
        "_send_keyframe",
        "_RTCRtpSender__mid",
        "_RTCRtpSender__rtp_history",
        "_RTCRtpSender__rtp_header_extensions_map",
        "_run_rtcp",
        "_RTCRtpSender__cname",
        "_RTCRtpSender__rtcp_started",
        "_RTCRtpSender__rtcp_exited",
    ),
    "RTCRtpTransceiver": ("_codecs",),
    "RTCDtlsTransport": ("_state", "_rx_srtp", "_tx_srtp", "_rtp_header_extensions_map"),
    "RTCIceTransport": ("_connection",),
    "HeaderExtensionsMap": ("_HeaderExtensionsMap__ids",),
}
# The replaced method is called by the DTLS transport with these arguments.
_HANDLER_PARAMETERS: Final = ("self", "packet", "arrival_time_ms")


class AiortcChanged(RuntimeError):
    """The installed aiortc is not the one this module was written against."""


async def verify_aiortc() -> None:
    """Fail loudly, naming what is missing, if aiortc or aioice no longer has what
    this module and sfu/ice.py rely on (an upgrade past the pinned range)."""
    parameters = tuple(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters)
    missing = [] if parameters == _HANDLER_PARAMETERS else ["_handle_rtp_packet(packet, ...)"]
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video")
        dtls = transceiver.sender.transport
        objects: dict[str, Any] = {
            "RTCRtpReceiver": transceiver.receiver,
            "RTCRtpSender": transceiver.sender,
            "RTCRtpTransceiver": transceiver,
            "RTCDtlsTransport": dtls,
            "RTCIceTransport": dtls.transport,
            "HeaderExtensionsMap": dtls._rtp_header_extensions_map,
        }
        for owner, names in RELIED_ON.items():
            missing += [f"{owner}.{n}" for n in names if not hasattr(objects[owner], n)]
        connection = getattr(dtls.transport, "_connection", None)
        for owner, names in ice.RELIED_ON.items():
            missing += [f"aioice {owner}.{n}" for n in names if not hasattr(connection, n)]
    finally:
        await pc.close()
    if missing:
        raise AiortcChanged(
            "packet forwarding does not work with this aiortc (missing: "
            + ", ".join(missing)
            + '); use forwarding = "transcode", or the aiortc version in pyproject.toml'
        )


def newer(a: int, b: int) -> bool:
    """Sequence number a comes after b (16 bits, wrapping)."""
    return a != b and (a - b) & 0xFFFF < 0x8000


def ntp_now() -> int:
    """The wall clock as NTP's 64-bit fixed point (aiortc's own goes through a
    datetime: too dear once per packet)."""
    return int((time.time() + _NTP_EPOCH_OFFSET) * 4_294_967_296)


class Received:
    """A published RTP packet, parsed once however many receive it (RFC 3550 section
    5.1): its header fields, its payload, and the sound level it carries (RFC 6464's
    byte, for audio). `_data` is for aiortc's jitter buffer (the recorder's)."""

    __slots__ = (
        "_data",
        "audio_level",
        "marker",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )  # fmt: skip

    def __init__(
        self, marker: bool, payload_type: int, sequence_number: int, timestamp: int,
        ssrc: int, payload: bytes, audio_level: int | None = None,
    ) -> None:  # fmt: skip
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.audio_level = audio_level
        self._data = b""

    @classmethod
    def parse(cls, data: bytes, audio_level_id: int = 0) -> Received:
        """ValueError if `data` is not an RTP packet."""
        if len(data) < _RTP_HEADER.size:
            raise ValueError("shorter than an RTP header")
        first, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError("not RTP version 2")
        offset = _RTP_HEADER.size + 4 * (first & 0x0F)
        level = None
        if first & 0x10:
            if len(data) < offset + _EXTENSION_HEADER.size:
                raise ValueError("truncated header extension")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + _EXTENSION_HEADER.size
            offset = start + 4 * words
            if audio_level_id:
                value = _element(data, profile, start, min(offset, len(data)), audio_level_id)
                level = value[0] if value is not None and len(value) == 1 else None
        end = len(data) - (data[-1] if first & 0x20 else 0)
        if offset > end:
            raise ValueError("truncated packet")
        return cls(bool(second & 0x80), second & 0x7F, sequence_number, timestamp, ssrc,
                   data[offset:end], level)  # fmt: skip

    @classmethod
    def of(cls, packet: RtpPacket) -> Received:
        """What aiortc parsed (the packets it had before the fast path took over)."""
        level = packet.extensions.audio_level
        return cls(
            bool(packet.marker), packet.payload_type, packet.sequence_number,
            packet.timestamp, packet.ssrc, packet.payload,
            None if level is None else (0x80 if level[0] else 0) | level[1],
        )  # fmt: skip


def rtp_extension(data: bytes, wanted: int) -> bytes | None:
    """The value of header extension element `wanted` in an RTP packet (RFC 8285),
    read from the header alone (in the clear under SRTP); None if it has none."""
    if not wanted or len(data) < _RTP_HEADER.size or not data[0] & 0x10:
        return None
    at = _RTP_HEADER.size + 4 * (data[0] & 0x0F)
    if len(data) < at + _EXTENSION_HEADER.size:
        return None
    profile, words = _EXTENSION_HEADER.unpack_from(data, at)
    start = at + _EXTENSION_HEADER.size
    return _element(data, profile, start, min(start + 4 * words, len(data)), wanted)


def _element(data: bytes, profile: int, start: int, end: int, wanted: int) -> bytes | None:
    """Element `wanted`'s value among the extension elements in data[start:end], in
    RFC 8285's one-byte (section 4.2) or two-byte (4.3) form."""
    one_byte = profile == _ONE_BYTE_EXTENSIONS
    if not one_byte and profile & 0xFFF0 != _TWO_BYTE_EXTENSIONS:
        return None
    at = start
    while at < end:
        if data[at] == 0:  # padding
            at += 1
            continue
        if one_byte:
            element, length, value = data[at] >> 4, (data[at] & 0x0F) + 1, at + 1
            if element == 15:
                return None
        elif at + 1 < end:
            element, length, value = data[at], data[at + 1], at + 2
        else:
            return None
        if element == wanted:
            return data[value : min(value + length, end)]
        at = value + length
    return None


def keyframe_start(payload: bytes) -> bytes | None:
    """The start of the VP8 frame when the packet is the first of a keyframe (RFC
    7741: S=1, partition 0, P bit 0); None for any other packet."""
    if not payload or payload[0] & 0x17 != 0x10:  # S set, partition 0: most are not
        return None
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return None
    if descriptor.partition_start == 1 and descriptor.partition_id == 0 and rest:
        return None if rest[0] & 0x01 else rest
    return None


class Wire:
    """A bundled connection's media below aiortc, one per DTLS transport: packets
    encrypted with its SRTP session and sent at once, and published RTP decrypted as
    it arrives and handed to the `route` of its payload type. The bench's load uses
    `listen` instead, to count packets without decrypting them."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._datagrams = ice.Datagrams(dtls.transport._connection)
        self._routes: dict[int, Callable[[bytes], None]] = {}
        self._listener: Callable[[bytes], None] | None = None
        self._failures = 0
        self._datagrams.intercept(self._received)
        self._reporters: list[PacketOutlet] = []
        self._reporting: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, dtls: RTCDtlsTransport) -> Wire:
        """The transport's wire, made the first time: kept on the transport itself, so
        that it goes when the connection goes (a table of them would keep every
        connection's transport for good)."""
        wire = vars(dtls).get(_WIRE)
        if wire is None:
            wire = vars(dtls)[_WIRE] = cls(dtls)
        assert isinstance(wire, Wire)
        return wire

    @property
    def header_extensions(self) -> Any:
        """The ids the negotiation gave the header extensions (aiortc's)."""
        return self._dtls._rtp_header_extensions_map._HeaderExtensionsMap__ids  # type: ignore[attr-defined]

    def send_rtp(self, packet: bytes) -> None:
        """ConnectionError while DTLS is not (or no longer) up."""
        dtls = self._dtls
        if dtls._state is not State.CONNECTED:
            raise ConnectionError("not connected")
        self._datagrams.send(dtls._tx_srtp.protect(packet))

    def send_rtcp(self, packet: bytes) -> None:
        dtls = self._dtls
        if dtls._state is not State.CONNECTED:
            raise ConnectionError("not connected")
        self._datagrams.send(dtls._tx_srtp.protect_rtcp(packet))

    def report(self, outlet: PacketOutlet) -> None:
        """Send `outlet`'s sender reports from now on, with the others' on this
        connection: one compound RTCP packet a second (RFC 3550 section 6.1), where
        aiortc sends one per sender (a tenth of the packets in a six-person
        conference)."""
        self._reporters.append(outlet)
        if self._reporting is None:
            self._reporting = asyncio.create_task(self._report(), name="sender-reports")

    def unreport(self, outlet: PacketOutlet) -> None:
        if outlet in self._reporters:
            self._reporters.remove(outlet)
        if not self._reporters and self._reporting is not None:
            self._reporting.cancel()
            self._reporting = None

    async def _report(self) -> None:
        while self._dtls._state not in (State.CLOSED, State.FAILED):
            await asyncio.sleep(SENDER_REPORT_SECONDS)
            sending = [outlet for outlet in self._reporters if outlet.has_sent]
            for start in range(0, len(sending), REPORTS_PER_PACKET):
                group = sending[start : start + REPORTS_PER_PACKET]
                sources = RtcpSdesPacket(chunks=[outlet.source for outlet in group])
                compound = [*(bytes(outlet.sender_report()) for outlet in group), bytes(sources)]
                with contextlib.suppress(ConnectionError):
                    self.send_rtcp(b"".join(compound))

    def route(self, payload_type: int, handler: Callable[[bytes], None]) -> None:
        """Decrypted RTP of `payload_type` goes to `handler`, not to aiortc."""
        self._routes[payload_type] = handler

    def listen(self, handler: Callable[[bytes], None]) -> None:
        """Every RTP packet arriving goes to `handler` as it came, still encrypted (its
        header is in the clear), and nothing to aiortc."""
        self._listener = handler

    def unprotect(self, data: bytes) -> bytes | None:
        """A listened packet, decrypted; None if it is not authentic."""
        try:
            return bytes(self._dtls._rx_srtp.unprotect(data))
        except pylibsrtp.Error:
            return None

    def _received(self, data: bytes) -> bool:
        """Called in the socket's callback: nothing raised here may escape. What is
        not taken (too short for RTP, RTCP, or before SRTP is keyed: the handshake's
        end is still queued) goes on to aiortc, which drops or handles it."""
        if len(data) < _RTP_HEADER.size or self._dtls._rx_srtp is None or is_rtcp(data):
            return False
        handler = self._listener or self._routes.get(data[1] & 0x7F)
        if handler is None:
            return False
        try:
            handler(data if self._listener else self._dtls._rx_srtp.unprotect(data))
        except pylibsrtp.Error:
            pass  # not authentic, or replayed: dropped as aiortc drops it
        except Exception:
            self._failures += 1
            if self._failures == 1:
                log.exception("a received packet could not be handled")
        return True


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


class _ParkedTrack(MediaStreamTrack):
    """Keeps a sender's own loop waiting, at no cost: the outlet sends instead."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("a parked track yields nothing")


class Header:
    """The RTP header of a subscriber's m-line, built once the m-line is negotiated
    and rewritten in place for each packet: its payload type, SSRC and header
    extensions (the mid, abs-send-time, and the sound level for audio) stay as the
    negotiation made them, in RFC 8285's one-byte form (aiortc's offers number them
    1-14)."""

    def __init__(self, payload_type: int, ssrc: int, mid: str, ids: Any, kind: Kind) -> None:
        elements = bytearray()
        self._time_at = self._level_at = 0
        name = mid.encode()
        if ids.mid and 0 < len(name) <= 16:
            elements += bytes([ids.mid << 4 | len(name) - 1]) + name
        base = _RTP_HEADER.size + _EXTENSION_HEADER.size
        if ids.abs_send_time:
            self._time_at = base + len(elements)
            self._time_tag = (ids.abs_send_time << 4 | 2) << 24  # with its 3 bytes
            elements += bytes(4)
        if kind == "audio" and ids.audio_level:
            self._level_at = base + len(elements) + 1
            elements += bytes([ids.audio_level << 4, 0])
        elements += bytes(-len(elements) % 4)
        self._marker_type = (0x80 | payload_type, payload_type)
        first = 0x90 if elements else 0x80  # version 2, with or without extensions
        self.bytes = bytearray(_RTP_HEADER.pack(first, payload_type, 0, 0, ssrc))
        if elements:
            self.bytes += _EXTENSION_HEADER.pack(_ONE_BYTE_EXTENSIONS, len(elements) // 4)
            self.bytes += elements

    def write(
        self, marker: bool, sequence_number: int, timestamp: int, ntp: int, level: int | None
    ) -> bytearray:
        header = self.bytes
        header[1] = self._marker_type[0 if marker else 1]
        _SEQUENCE_AND_TIME.pack_into(header, 2, sequence_number, timestamp)
        if self._time_at:
            _WORD.pack_into(header, self._time_at, self._time_tag | (ntp >> 14) & 0xFFFFFF)
        if self._level_at:
            header[self._level_at] = 0x7F if level is None else level  # 127: silence
        return header


class _History:
    """The sender's retransmission history, which aiortc's `_retransmit` reads as a
    dict (sequence number modulo RTP_HISTORY_SIZE -> packet): kept as the forwarded
    packets themselves, the packet to send again made only when one is asked for."""

    def __init__(self, payload_type: int, ssrc: int, mid: str) -> None:
        self._payload_type, self._ssrc, self._mid = payload_type, ssrc, mid
        # Sequence number modulo RTP_HISTORY_SIZE -> (sequence number, timestamp,
        # packet) as sent.
        self.sent: list[tuple[int, int, Received] | None] = [None] * RTP_HISTORY_SIZE

    def get(self, at: int) -> RtpPacket | None:
        entry = self.sent[at]
        if entry is None:
            return None
        sequence_number, timestamp, packet = entry
        again = RtpPacket(
            payload_type=self._payload_type, marker=packet.marker,
            sequence_number=sequence_number, timestamp=timestamp, ssrc=self._ssrc,
            payload=packet.payload,
        )  # fmt: skip
        again.extensions.mid = self._mid
        again.extensions.abs_send_time = (ntp_now() >> 14) & 0xFFFFFF
        return again


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
        # The sender's reports go with the others' on this connection (Wire.report),
        # made from these: an RTP time against a wall-clock time, packets and bytes.
        self._sender._run_rtcp = self._reports_by_the_wire  # type: ignore[method-assign]
        self._report_times = (0, 0)
        self._packets_sent = self._octets_sent = 0
        # Once negotiated: the header to write, the wire to send on.
        self._header: Header | None = None
        self._wire: Wire | None = None
        # `remb`: the subscriber's own bandwidth estimate, for the publisher's bitrate.
        # From the next packet on, the stream is re-based (on a keyframe, for video).
        self._rebase = True
        # This stream began with the source's kept keyframe (and waits for a live one).
        self._replayed = False
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
        self._last_sent_ntp = 0
        self._failed = False

    def _restart(self) -> None:
        """Begin again from the source's next keyframe, asked for now (or from its
        kept one, if it has one)."""
        self._rebase = True
        self._replayed = False
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

    def _negotiated(self) -> Header | None:
        """The m-line's header and wire, once the page has answered for it."""
        sender = self._sender
        mid = sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        codecs = self._transceiver._codecs
        payload_type = codecs[0].payloadType if codecs else None
        if mid is None or payload_type is None or sender.transport is None:
            return None
        self._wire = Wire.of(sender.transport)
        self._header = Header(payload_type, sender._ssrc, mid, self._wire.header_extensions,
                              self._kind)  # fmt: skip
        self._history = _History(payload_type, sender._ssrc, mid)
        vars(sender)["_RTCRtpSender__rtp_history"] = self._history
        self._wire.report(self)
        return self._header

    def _unwrap(self, sequence_number: int) -> int:
        return self._newest + ((sequence_number - self._newest + 0x8000) & 0xFFFF) - 0x8000

    def forward(self, packet: Received, keyframe: bool, ntp: int) -> None:
        if self._header is None and self._negotiated() is None:
            return
        if not self._rebase:
            extended = self._unwrap(packet.sequence_number)
            if packet.ssrc != self._source_ssrc or extended - self._newest > MAX_SEQUENCE_JUMP:
                self._restart()  # the publisher started a new stream
            elif extended < self._first:
                return  # from before the stream was re-based
        if self._rebase:
            if self._kind == "video" and not keyframe:
                if not self._replay(ntp):
                    self._still_waiting()
                return  # a picture that would not decode: wait for the keyframe
            self._rebase_on(packet, ntp)
            extended = self._newest  # the re-based stream's first packet
        self._send(packet, extended, ntp)

    def _replay(self, ntp: int) -> bool:
        """Begin the stream with the source's kept keyframe, once: a first picture at
        once. What follows it in the source refers to pictures this subscriber never
        had, so the stream waits for a live keyframe again (asked for at connect)."""
        kept = () if self._replayed or self._source is None else self._source.kept_keyframe()
        if not kept:
            return False
        self._replayed = True
        self._rebase_on(kept[0], ntp)
        for packet in kept:
            self._send(packet, self._unwrap(packet.sequence_number), ntp)
            if not self._replayed:
                return True  # not connected: begun again
        self._rebase = True
        return True

    def _send(self, packet: Received, extended: int, ntp: int) -> None:
        assert self._header is not None and self._wire is not None
        sequence_number = (packet.sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        header = self._header.write(packet.marker, sequence_number, timestamp, ntp,
                                    packet.audio_level)  # fmt: skip
        entry = (sequence_number, timestamp, packet)
        self._history.sent[sequence_number % RTP_HISTORY_SIZE] = entry
        try:
            self._wire.send_rtp(b"".join((header, packet.payload)))
        except ConnectionError:
            # The subscriber's connection is not up (yet, or any more): start again
            # from a keyframe once it is.
            self._restart()
            return
        if extended < self._newest:
            return  # a late packet: the stream's timing stays that of the newest
        self._newest = extended
        self._next_seq = (sequence_number + 1) & 0xFFFF
        self._last_ts, self._last_sent_ntp = timestamp, ntp
        self._packets_sent += 1
        self._octets_sent += len(packet.payload)

    def _rebase_on(self, packet: Received, ntp: int) -> None:
        """The new stream goes on from where the subscriber's last one stopped: the
        next sequence number, and a timestamp as much later as time has passed."""
        self._rebase = False
        if self._last_ts is None:
            timestamp = packet.timestamp
        else:
            elapsed = (ntp - self._last_sent_ntp) * self._clock_rate >> 32
            timestamp = self._last_ts + max(1, elapsed)
        self._ts_offset = (timestamp - packet.timestamp) & 0xFFFFFFFF
        self._seq_offset = (self._next_seq - packet.sequence_number) & 0xFFFF
        self._source_ssrc = packet.ssrc
        self._first = self._newest = packet.sequence_number

    async def _reports_by_the_wire(self) -> None:
        """In place of the sender's own RTCP loop: its reports go with the others'
        (Wire.report). aiortc's stop() waits for these two events."""
        events = vars(self._sender)
        events["_RTCRtpSender__rtcp_started"].set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().create_future()
        events["_RTCRtpSender__rtcp_exited"].set()

    @property
    def has_sent(self) -> bool:
        return self._packets_sent > 0

    @property
    def source(self) -> RtcpSourceInfo:
        """Who sends this stream (its SDES CNAME), for the reports."""
        cname = vars(self._sender)["_RTCRtpSender__cname"] or ""
        return RtcpSourceInfo(ssrc=self._sender._ssrc, items=[(1, cname.encode())])

    def sender_report(self) -> RtcpSrPacket:
        info = RtcpSenderInfo(
            ntp_timestamp=self._last_sent_ntp,
            rtp_timestamp=self._last_ts or 0,
            packet_count=self._packets_sent & 0xFFFFFFFF,
            octet_count=self._octets_sent & 0xFFFFFFFF,
        )
        return RtcpSrPacket(ssrc=self._sender._ssrc, sender_info=info)

    def close(self) -> None:
        self.connect(None)
        if self._wire is not None:
            self._wire.unreport(self)


class PacketForwarding:
    """Forwarding without decoding or encoding (the default)."""

    def __init__(self, bitrate_cap: int) -> None:
        self._bitrate_cap = bitrate_cap

    def publish(self, transceiver: Transceiver, kind: Kind) -> PacketSource:
        return PacketSource(transceiver, kind, self._bitrate_cap)

    def subscribe(self, transceiver: Transceiver, kind: Kind) -> PacketOutlet:
        return PacketOutlet(transceiver, kind)
