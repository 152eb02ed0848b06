"""The candidates of a page's answer: the server sends connectivity checks only to
addresses a browser can honestly have, and only with the ICE username and password
the grammar allows.

The refusals are checked on a server whose media address is 192.0.2.1 (a
documentation address on no interface here): it announces that address but cannot
bind it, so it has no socket to send anything from, whatever its connection holds.
What its aiortc connection was given, and what its ICE agent holds, show what it
would send checks to."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from clinicconf.config import Settings
from clinicconf.sfu import ice
from clinicconf.sfu.passthrough import PacketForwarding
from clinicconf.sfu.peer import Peer

from ...support.lobby import Lobby
from ...support.media_peers import (
    BOTH,
    Join,
    MediaParticipant,
    enter,
    introduce,
    of,
    real_answer,
    receive_exactly,
)
from ...support.servers import Client

ANNOUNCED = "192.0.2.1"
# What Linux delivers to the host itself: where a candidate refused on a server on
# loopback would lead, were it ever taken.
UNSPECIFIED = "0.0.0.0"  # noqa: S104
HONEST = [
    ("203.0.113.50", 50000, "host"),
    ("198.51.100.8", 61000, "srflx"),
    ("2001:db8::5", 3478, "relay"),
    ("10.1.2.3", 50001, "host"),  # a clinic's own network
]
REFUSED = [
    ("127.0.0.1", 8080, "host"),  # loopback: the server itself
    ("127.9.9.9", 22, "host"),
    ("::1", 8080, "host"),
    ("::ffff:127.0.0.1", 8080, "host"),  # loopback written as IPv6
    ("169.254.169.254", 80, "host"),  # link-local: a cloud's metadata service
    ("fe80::1", 5000, "host"),
    ("fe80::1%eth0", 5000, "host"),
    ("2001:db8::7%1", 5000, "host"),  # a zone: an interface of the machine that wrote it
    ("224.0.0.251", 5353, "host"),  # multicast
    ("ff02::fb", 5353, "host"),
    (UNSPECIFIED, 9, "host"),
    ("0.1.2.3", 9, "host"),
    ("::", 9, "host"),
    ("255.255.255.255", 5000, "host"),  # broadcast
    (ANNOUNCED, 3478, "host"),  # the server's own media address
    (f"::ffff:{ANNOUNCED}", 3478, "srflx"),
    ("203.0.113.50", 0, "host"),  # no port
]


def candidate_lines(candidates: list[tuple[str, int, str]]) -> str:
    return "".join(
        f"a=candidate:{n} 1 udp {2122260223 - n} {address} {port} typ {kind}\r\n"
        for n, (address, port, kind) in enumerate(candidates)
    )


def with_candidates(answer: str, lines: str) -> str:
    """The answer with `lines` in place of its own candidates, in its first m-section
    as Chrome puts them, and its end-of-candidates."""
    kept = [
        line
        for line in answer.split("\r\n")
        if line and not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    first_media = next(n for n, line in enumerate(kept) if line.startswith("m="))
    second_media = next(
        (n for n, line in enumerate(kept) if line.startswith("m=") and n > first_media),
        len(kept),
    )
    kept.insert(second_media, lines.rstrip("\r\n") + "\r\na=end-of-candidates")
    return "\r\n".join(kept) + "\r\n"


def remote_candidates(pc: RTCPeerConnection) -> dict[str, set[str]]:
    """What the server's aiortc connection was handed as the page's candidates, and
    what its ICE agent holds (the bundled transport every m-line shares)."""
    described = re.findall(r"a=candidate:\S+ \d+ \S+ \d+ (\S+) ", pc.remoteDescription.sdp)
    agent = pc.getTransceivers()[0].receiver.transport.transport
    return {
        "described": set(described),
        "agent": {candidate.ip for candidate in agent.getRemoteCandidates()},
    }


@dataclass
class Served:
    """A server-side media connection, its aiortc connection, and what it sent its page."""

    peer: Peer
    pc: RTCPeerConnection
    sent: list[dict[str, Any]]


ServerPeer = Callable[[str], Served]


@pytest.fixture
async def server_peer() -> AsyncIterator[ServerPeer]:
    """Makes a server-side media connection of a server whose media address is the
    one given."""
    made: list[Peer] = []
    failures: list[str] = []

    def make(address: str) -> Served:
        settings = Settings(ice_addresses=address)
        ice.install(settings)
        sent: list[dict[str, Any]] = []
        pc = RTCPeerConnection(ice.server_configuration(settings))
        peer = Peer(
            pc,
            PacketForwarding(settings.max_video_bitrate),
            sent.append,
            [],  # no STUN or TURN: loopback only
            lambda _, message: failures.append(message),
            settings.ice_address_list,
        )
        made.append(peer)
        return Served(peer, pc, sent)

    yield make
    for peer in made:
        await peer.close()
    ice.install(Settings())
    assert failures == []


async def answered(served: Served, candidates: list[tuple[str, int, str]]) -> RTCPeerConnection:
    """The page answers the server's offer, naming `candidates`; the server's aiortc
    connection."""
    await served.peer.offer()
    (offer,) = served.sent
    answer = with_candidates(await real_answer(offer["sdp"]), candidate_lines(candidates))
    await served.peer.answer(answer)
    return served.pc


async def test_only_addresses_a_browser_can_have_reach_the_servers_ice_agent(
    server_peer: ServerPeer,
) -> None:
    pc = await answered(server_peer(ANNOUNCED), HONEST + REFUSED)
    honest = {address for address, _, _ in HONEST}
    assert remote_candidates(pc) == {"described": honest, "agent": honest}


async def test_mdns_names_are_dropped_not_resolved(server_peer: ServerPeer) -> None:
    """Resolving one would ask the clinic's network by multicast and believe any answer."""
    mdns = [("5d1e7b6a-04c3-4f7e-9a51-6f3c2f0e8b1d.local", 50000, "host")]
    pc = await answered(server_peer(ANNOUNCED), HONEST[:1] + mdns)
    assert remote_candidates(pc) == {"described": {"203.0.113.50"}, "agent": {"203.0.113.50"}}


async def test_a_server_on_loopback_takes_loopback_candidates(server_peer: ServerPeer) -> None:
    """Its browsers are on the same machine (the tests, a laptop), its own address
    included; what is refused anywhere still is."""
    candidates = [("127.0.0.1", 9, "host"), ("::1", 9, "host"), (UNSPECIFIED, 9, "host")]
    pc = await answered(server_peer("127.0.0.1"), candidates)
    assert remote_candidates(pc)["agent"] == {"127.0.0.1", "::1"}


class NamingNoAddress(MediaParticipant):
    """A page whose answer names none of its addresses in a way the server may use
    (as a browser naming them by mDNS only), and says that is all of them."""

    async def send(self, type_: str, **fields: Any) -> int:
        if type_ == "answer":
            refused = candidate_lines([(UNSPECIFIED, 9, "host")])
            fields["sdp"] = with_candidates(fields["sdp"], refused)
        return await super().send(type_, **fields)


async def test_a_page_whose_every_candidate_is_refused_still_connects(
    client: Client, lobby: Lobby, join: Join
) -> None:
    """The server learns the page's address from the page's own checks."""
    host = await join(lobby.host_path, 50)
    assert (await host.request("start"))["type"] == "result"
    patient = NamingNoAddress(await client.ws_connect(lobby.pat_path), 120)
    try:
        await patient.hello()
        introduce([host, patient])
        for participant in (host, patient):
            await enter(participant)
        await receive_exactly({host: of((patient, BOTH)), patient: of((host, BOTH))})
    finally:
        await patient.close()


@pytest.mark.parametrize(
    "credentials",
    [
        "a=ice-ufrag:" + "u" * 257,  # past the 256 characters RFC 8839 allows
        "a=ice-ufrag:four five",
        "a=ice-ufrag:ab",
        "a=ice-pwd:short",
        "a=ice-pwd:" + "p" * 21 + "\u00e9",
    ],
)
async def test_malformed_ice_credentials_are_refused(
    lobby: Lobby, open_page: Any, credentials: str
) -> None:
    host, _ = await open_page(lobby.host_path)
    assert (await host.request("start"))["type"] == "result"
    page, _ = await open_page(lobby.pat_path)
    assert (await page.request("join_media"))["type"] == "result"
    offer = await page.receive("offer")
    attribute = credentials.split(":")[0] + ":"
    answer = "".join(
        f"{credentials if line.startswith(attribute) else line}\r\n"
        for line in (await real_answer(offer["sdp"])).splitlines()
    )
    refused = await page.request("answer", connection=offer["connection"], sdp=answer)
    assert (refused["type"], refused["code"]) == ("error", "bad_sdp")
    assert "ICE username or password" in refused["message"]
