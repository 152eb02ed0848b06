"""A subscriber's sending m-line on the fast path: fed the packets of the source it
is connected to, each sent with the subscriber's own header at once, the stream
re-based whenever it starts on a new source (on a keyframe, for video, the source's
kept one first) so that the browser sees one continuous stream.

aiortc's `RTCRtpSender` is kept for what it does well and given a track that never
yields; this module reaches into it (`RELIED_ON`, checked by `verify_aiortc` at
start-up): its retransmission history is the outlet's (NACKs from the browser are
answered with RTX by aiortc), its sender reports go with the connection's others
(`Wire.report`) instead of its own RTCP loop, and its `_send_keyframe` (its answer
to the browser's PLI or FIR) asks the publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from typing import Any, Final

from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc import RTCRtpTransceiver as Transceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from ...moderation import Kind
from .rtp import CLOCK_RATES, Header, Received, ntp_now
from .source import KEYFRAME_INTERVAL_SECONDS, PacketSink, PacketSource
from .wire import Wire

log = logging.getLogger(__name__)

# A subscriber that already has pictures is heard at most this often when it asks
# for a keyframe.
SUBSCRIBER_KEYFRAME_SECONDS: Final = 3.0
# Further ahead than this, a sequence number means the publisher started over.
MAX_SEQUENCE_JUMP: Final = 1000

# What this module uses of aiortc that is not its public API: attributes of a fresh
# sender of a negotiated transceiver, and of the transceiver. (`_retransmit` reads
# the history put in the sender's place.)
RELIED_ON: Final = {
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
}


class _ParkedTrack(MediaStreamTrack):
    """Keeps a sender's own loop waiting, at no cost: the outlet sends instead."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("a parked track yields nothing")


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
