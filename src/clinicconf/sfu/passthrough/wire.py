"""The wire of one bundled connection, below aiortc: what the fast path sends is
encrypted with the connection's SRTP session and sent on its nominated candidate pair
at once (sfu/ice.py's `Datagrams`), published RTP is decrypted as it arrives, and the
sender reports of all its outlets go together, once a second.

This module reaches into aiortc's DTLS and ICE transports for the SRTP sessions, the
negotiated header extensions and the ICE connection (`RELIED_ON`, checked by
`verify_aiortc` at start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import pylibsrtp
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import State
from aiortc.rtp import RtcpSdesPacket, RtcpSourceInfo, RtcpSrPacket, is_rtcp

from .. import ice
from .rtp import RTP_HEADER

log = logging.getLogger(__name__)

# How often a connection's sender reports go, and how many share a compound packet
# (an SDES packet has room for 31 sources).
SENDER_REPORT_SECONDS: Final = 1.0
REPORTS_PER_PACKET: Final = 15
# Where a DTLS transport keeps its Wire.
_WIRE: Final = "_clinicconf_wire"

# What this module uses of aiortc that is not its public API: attributes of a fresh
# transceiver's DTLS transport, of its ICE transport, and of its header extensions.
RELIED_ON: Final = {
    "RTCDtlsTransport": ("_state", "_rx_srtp", "_tx_srtp", "_rtp_header_extensions_map"),
    "RTCIceTransport": ("_connection",),
    "HeaderExtensionsMap": ("_HeaderExtensionsMap__ids",),
}


class Reporter(Protocol):
    """A sending m-line whose sender reports the wire sends (an outlet)."""

    @property
    def has_sent(self) -> bool: ...

    @property
    def source(self) -> RtcpSourceInfo:
        """Who sends the stream (its SDES CNAME)."""

    def sender_report(self) -> RtcpSrPacket: ...


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
        self._reporters: list[Reporter] = []
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

    def report(self, outlet: Reporter) -> None:
        """Send `outlet`'s sender reports from now on, with the others' on this
        connection: one compound RTCP packet a second (RFC 3550 section 6.1), where
        aiortc sends one per sender (a tenth of the packets in a six-person
        conference)."""
        self._reporters.append(outlet)
        if self._reporting is None:
            self._reporting = asyncio.create_task(self._report(), name="sender-reports")

    def unreport(self, outlet: Reporter) -> None:
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
        if len(data) < RTP_HEADER.size or self._dtls._rx_srtp is None or is_rtcp(data):
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
