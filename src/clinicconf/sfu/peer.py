"""One page's media connection. The server always makes the offers (aiortc's
re-offers are refused by Chrome on a connection the browser offered on, aiortc
#686); the page only answers. The first offer has two receiving m-lines for the
page's own microphone and camera; every later one keeps the earlier m-lines and
adds sending ones for the tracks the page is to receive.

Everything the page sends is checked here before aiortc sees it: aiortc raises
many kinds of exceptions on malformed SDP and cannot always be closed after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription

from ..moderation import KINDS, Kind
from ..page_messages import IceServer, Offer
from . import ice
from .forward import Forwarding, Outlet, Source

log = logging.getLogger(__name__)

# Far more than a conference's m-lines (two per other participant, two to publish);
# what a page may answer is checked against the offer anyway.
MAX_SDP_CHARS: Final = 60_000
ANSWER_TIMEOUT_SECONDS: Final = 15.0
# A browser offers a handful (an address per interface, a relay or two), a laptop
# with a VPN and IPv6 a few dozen; each one is an address the server would send
# connectivity checks to. Past the first limit the server keeps the most useful
# ones; past the second, the answer is hostile.
MAX_CANDIDATES: Final = 20
MAX_CANDIDATES_OFFERED: Final = 100
# The directions the page may answer: on its own m-lines it sends (or, without that
# device, nothing); on the others it only receives.
_SENDING: Final = ("sendonly", "inactive")
_RECEIVING: Final = ("recvonly", "inactive")
_CODECS: Final = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}
_CANDIDATE: Final = "a=candidate:"
_ICE_UFRAG: Final = re.compile(r"[A-Za-z0-9+/]{4,256}")
_ICE_PWD: Final = re.compile(r"[A-Za-z0-9+/]{22,256}")


class BadAnswer(Exception):
    """The page's answer cannot be used; the connection is closed."""


class OutOfTurn(Exception):
    """An answer while no offer is waiting for one."""


@dataclass(eq=False)
class Slot:
    """A sending m-line: one track that this page receives, or may receive."""

    transceiver: RTCRtpTransceiver
    outlet: Outlet
    kind: Kind
    # The publisher whose track this slot carries; None while free for another.
    publisher: str | None = None


class Peer:
    def __init__(
        self,
        pc: RTCPeerConnection,
        forwarding: Forwarding,
        send: Callable[[Offer], None],
        ice_servers: list[IceServer],
        failed: Callable[[Peer, str], None],
        ice_addresses: tuple[str, ...],
    ) -> None:
        # Names this connection in every message about it: a page tells an offer or a
        # closing of its current connection from one of an earlier connection.
        self.id = secrets.token_hex(4)
        self._pc = pc
        self._forwarding = forwarding
        self._send = send
        # What the page's RTCPeerConnection is configured with, told in each offer.
        self._ice_servers = ice_servers
        self._failed = failed
        # The media addresses the server announces (settings.ice_addresses), besides
        # those its offers name.
        self._ice_addresses = ice_addresses
        self._publish = {kind: self._transceiver(kind, "recvonly") for kind in KINDS}
        self.sources: dict[Kind, Source] = {}
        self.slots: list[Slot] = []
        # From the moment an offer is begun until its answer is applied: one at a time.
        self._negotiating = False
        self._waiting_answer: SessionDescription | None = None
        self._offer_again = False
        self._answer_timer: asyncio.TimerHandle | None = None
        # The last offer's making, which gathers candidates on new sockets (close()
        # waits for it).
        self._making_offer: asyncio.Task[bool] | None = None
        self.closed = False
        pc.on("connectionstatechange", self._connection_state_changed)

    def _transceiver(self, kind: Kind, direction: str) -> RTCRtpTransceiver:
        transceiver = self._pc.addTransceiver(kind, direction=direction)
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        transceiver.setCodecPreferences(
            [codec for codec in capabilities if codec.mimeType in _CODECS[kind]]
        )
        return transceiver

    def slot_for(self, kind: Kind, publisher: str) -> tuple[Slot, bool]:
        """The slot carrying `publisher`'s `kind`, taking a free one or adding one;
        True when an offer must tell the page of a new m-line."""
        free = None
        for slot in self.slots:
            if slot.kind == kind and slot.publisher == publisher:
                return slot, False
            if free is None and slot.kind == kind and slot.publisher is None:
                free = slot
        if free is not None:
            free.publisher = publisher
            return free, False
        transceiver = self._transceiver(kind, "sendonly")
        slot = Slot(transceiver, self._forwarding.subscribe(transceiver, kind), kind, publisher)
        self.slots.append(slot)
        return slot, True

    # --- offer and answer ---------------------------------------------------------------

    async def offer(self) -> None:
        """Send an offer now, or once the page has answered the one it has."""
        if self.closed:
            return
        if self._negotiating:
            self._offer_again = True
            return
        self._negotiating, self._offer_again = True, False
        # In a task of its own, which close() waits for and nobody cancels: see close().
        self._making_offer = asyncio.create_task(self._make_offer(), name="peer-offer")
        try:
            made = await asyncio.shield(self._making_offer)
        except Exception as exc:  # the connection was closed under us, by the page or aiortc
            if not self.closed:
                log.info("an offer could not be made: %s", type(exc).__name__)
                self._failed(self, "The connection to the media server was lost.")
            return
        if not made:
            return
        description = self._pc.localDescription
        self._waiting_answer = SessionDescription.parse(description.sdp)
        self._answer_timer = asyncio.get_running_loop().call_later(
            ANSWER_TIMEOUT_SECONDS, self._failed, self, "Your browser did not answer in time."
        )
        self._send(
            Offer(
                type="offer",
                connection=self.id,
                sdp=description.sdp,
                publish={kind: transceiver.mid for kind, transceiver in self._publish.items()},
                ice_servers=self._ice_servers,
            )
        )

    async def _make_offer(self) -> bool:
        """Create the offer and gather its candidates; False if the connection is
        being closed, and then nothing is gathered."""
        offer = await self._pc.createOffer()
        if self.closed:
            return False
        await self._pc.setLocalDescription(offer)
        return not self.closed

    async def answer(self, sdp: str) -> None:
        """Apply the page's answer; BadAnswer if it cannot be used."""
        offer = self._waiting_answer
        if offer is None:
            raise OutOfTurn("No offer is waiting for an answer.")
        publish_mids = {transceiver.mid for transceiver in self._publish.values()}
        self._check(sdp, offer, publish_mids)
        self._waiting_answer = None
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        own = (*self._ice_addresses, *_host_addresses(offer))
        honest = honest_candidates(sdp, ice.BrowserAddresses.besides(own))
        try:
            await self._pc.setRemoteDescription(
                RTCSessionDescription(spread_candidates(honest), "answer")
            )
        except Exception as exc:  # aiortc raises many kinds on what it cannot apply
            log.info("an answer could not be applied: %s", type(exc).__name__)
            raise BadAnswer("The answer could not be applied.") from None
        if self.closed:
            return
        self._negotiating = False
        for kind, transceiver in self._publish.items():
            if kind not in self.sources and transceiver.receiver.track is not None:
                self.sources[kind] = self._forwarding.publish(transceiver, kind)
        if self._offer_again:
            await self.offer()

    @staticmethod
    def _check(sdp: str, offer: SessionDescription, publish_mids: set[str | None]) -> None:
        """What the page answers must be the offer's m-lines, in order, in the
        directions offered: it sends on its own two, and only receives on the others."""
        if len(sdp) > MAX_SDP_CHARS:
            raise BadAnswer("The answer is too long.")
        try:
            answer = SessionDescription.parse(sdp)
        except Exception:  # the parser too raises many kinds
            raise BadAnswer("The answer is not valid SDP.") from None
        offered = [(m.kind, m.rtp.muxId) for m in offer.media]
        answered = [(m.kind, m.rtp.muxId) for m in answer.media]
        if answered != offered:
            raise BadAnswer("The answer does not match the offer.")
        for media in answer.media:
            allowed = _SENDING if media.rtp.muxId in publish_mids else _RECEIVING
            if media.direction not in allowed:
                raise BadAnswer(f"The answer's m-line {media.rtp.muxId} is {media.direction}.")
        # aiortc bundles everything onto the group's first mid: it must be one offered.
        mids = {mid for _, mid in offered}
        if any(not set(group.items) <= mids for group in answer.group):
            raise BadAnswer("The answer's BUNDLE group names m-lines the offer has not.")
        # They go into every connectivity check the server sends (RFC 8839's grammar).
        if not all(
            credentials is not None
            and _ICE_UFRAG.fullmatch(credentials.usernameFragment or "")
            and _ICE_PWD.fullmatch(credentials.password or "")
            for credentials in (media.ice for media in answer.media)
        ):
            raise BadAnswer("The answer's ICE username or password is missing or malformed.")
        if not any(line.startswith("a=fingerprint:") for line in sdp.splitlines()):
            raise BadAnswer("The answer has no DTLS fingerprint.")
        if len(_candidates(sdp)) > MAX_CANDIDATES_OFFERED:
            raise BadAnswer(f"The answer has more than {MAX_CANDIDATES_OFFERED} ICE candidates.")

    def _connection_state_changed(self) -> None:
        # "closed" without our closing it: the page closed its end (DTLS close).
        if self._pc.connectionState in ("failed", "closed") and not self.closed:
            self._failed(self, "The connection to the media server was lost.")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        for source in self.sources.values():
            await source.close()
        for slot in self.slots:
            slot.outlet.close()
        # aioice closes the sockets a gathering has opened, but adds them to what it
        # closes only once the gathering is done: a connection closed in the middle
        # would leave them open for good. So the gathering is let finish first (at
        # most aioice's 5 s for STUN and TURN), never cancelled, which would leave the
        # sockets of its STUN and TURN requests open in the same way.
        if self._making_offer is not None:
            with contextlib.suppress(Exception):  # offer() has dealt with it
                await self._making_offer
        # After some failed answers aiortc's own close raises (a transport it unset).
        try:
            await self._pc.close()
        except Exception as exc:
            log.warning("a peer connection did not close cleanly: %s", type(exc).__name__)


def honest_candidates(sdp: str, addresses: ice.BrowserAddresses) -> str:
    """The answer without the candidates the server must not send to. The browser's
    own checks still teach the server the addresses they come from (peer-reflexive
    candidates, RFC 8445 section 7.3.1.3), as for a browser that names its addresses
    by mDNS only. Lines are split and read as aiortc reads them (and as
    spread_candidates does, which also strips them)."""
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not line.strip().startswith(_CANDIDATE) or _admitted(line.strip(), addresses)
    ]
    return sdp if len(kept) == len(lines) else "".join(f"{line}\r\n" for line in kept)


def _admitted(candidate: str, addresses: ice.BrowserAddresses) -> bool:
    """foundation component transport priority address port typ type ..."""
    fields = candidate.removeprefix(_CANDIDATE).split()
    try:
        return len(fields) >= 8 and addresses.admit(fields[4], int(fields[5]))
    except ValueError:  # what aiortc could not read either
        return False


def _host_addresses(offer: SessionDescription) -> list[str]:
    """The server's own addresses its offer names."""
    return [c.ip for m in offer.media for c in m.ice_candidates if c.type == "host"]


def spread_candidates(sdp: str) -> str:
    """Chrome puts its candidates only in the first m-section of a bundled answer,
    and aiortc reads them from the last one (aiortc #1437): give every m-section
    the same candidates, at most MAX_CANDIDATES of them."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = [line for line in sdp.split(newline) if line]
    candidates = sorted(_candidates(sdp), key=_usefulness)[:MAX_CANDIDATES]
    if not candidates:
        return sdp
    out: list[str] = []
    sections = 0
    for line in lines:
        if line.startswith("a=candidate:"):
            continue
        if line.startswith("m="):
            if sections:
                out.extend(candidates)  # the end of the previous section
            sections += 1
        out.append(line)
    out.extend(candidates)
    return newline.join(out) + newline


def _candidates(sdp: str) -> list[str]:
    """The answer's distinct ICE candidate lines, in order."""
    lines = (line.strip() for line in sdp.splitlines())
    return list(dict.fromkeys(line for line in lines if line.startswith("a=candidate:")))


def _usefulness(candidate: str) -> tuple[bool, bool, int]:
    """UDP before TCP (aioice connects over UDP), then relays and server-reflexive
    addresses (the ones that cross a NAT, and the fewest), then by ICE priority."""
    fields = candidate.split()
    transport = fields[2].lower() if len(fields) > 2 else ""
    kind = fields[fields.index("typ") + 1] if "typ" in fields[:-1] else "host"
    priority = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else 0
    return (transport != "udp", kind not in ("relay", "srflx"), -priority)
