"""Forwarding packets: what a publisher sends is passed to each subscriber as
received, VP8 and Opus alike, never decoded or encoded again. Only the RTP header
changes per subscriber: its SSRC, payload type, sequence numbers and timestamps,
re-based whenever the subscriber starts receiving a new source, so that its
browser sees one continuous stream.

It is the server's fast path, one packet in and one per subscriber out, with no
await between them: a published packet is decrypted and parsed once, as it arrives
(`wire`, below aiortc's receive loop; `rtp`, the packet format); each subscriber's
copy is its own header, written in place, and the same payload, encrypted with that
subscriber's SRTP session and sent on its nominated candidate pair at once
(`outlet`). A video source keeps its latest keyframe, so that a new subscriber has a
first picture at once (replayed with its header rewritten) while a fresh one is
asked for (`source`).

aiortc has no public API for any of this, so this package is the one place that
reaches into its internals (docs/research/aiortc-sfu.md, section 4): `wire` into its
DTLS and ICE transports, `source` into its receiver, `outlet` into its sender. Each
lists what it uses in its `RELIED_ON`, all checked by `verify_aiortc` here at
start-up and in the tests (sfu/ice.py does the same for aioice's):

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

import inspect
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc import RTCRtpTransceiver as Transceiver

from ...moderation import Kind
from .. import ice
from . import outlet, source, wire
from .outlet import PacketOutlet
from .source import PacketSource


class AiortcChanged(RuntimeError):
    """The installed aiortc is not the one this package was written against."""


async def verify_aiortc() -> None:
    """Fail loudly, naming what is missing, if aiortc or aioice no longer has what
    this package and sfu/ice.py rely on (an upgrade past the pinned range)."""
    parameters = tuple(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters)
    missing = [] if parameters == source.HANDLER_PARAMETERS else ["_handle_rtp_packet(packet, ...)"]
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
        # Each module's, once (two of them use the transceiver's codecs).
        relied_on = dict.fromkeys(
            (owner, name)
            for module in (wire, source, outlet)
            for owner, names in module.RELIED_ON.items()
            for name in names
        )
        missing += [f"{o}.{n}" for o, n in relied_on if not hasattr(objects[o], n)]
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


class PacketForwarding:
    """Forwarding without decoding or encoding (the default)."""

    def __init__(self, bitrate_cap: int) -> None:
        self._bitrate_cap = bitrate_cap

    def publish(self, transceiver: Transceiver, kind: Kind) -> PacketSource:
        return PacketSource(transceiver, kind, self._bitrate_cap)

    def subscribe(self, transceiver: Transceiver, kind: Kind) -> PacketOutlet:
        return PacketOutlet(transceiver, kind)
