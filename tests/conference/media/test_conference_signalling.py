"""Malformed and hostile signalling on the conference's websocket: each is refused
with a clear error, the sender's media connection is dropped where it must be, and
the conference goes on for everyone else."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from clinicconf import keys
from clinicconf.sfu.peer import spread_candidates

from ...support.lobby import Lobby, Page
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


async def refused(page: Page | MediaParticipant, type_: str, **fields: Any) -> str:
    answer = await page.request(type_, **fields)
    assert answer["type"] == "error", answer
    assert answer["message"]
    return str(answer["code"])


def hundred_m_lines(offer_sdp: str) -> str:
    """An 'answer' that adds a hundred audio m-lines to the offer's session part."""
    head = offer_sdp.split("m=")[0]
    sections = "".join(
        f"m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n"
        "a=sendonly\r\na=rtpmap:96 opus/48000/2\r\n"
        for mid in range(100)
    )
    return head + sections


async def answer_sending_everywhere(offer_sdp: str) -> str:
    """Sending on the m-lines the server sends on, too (to have them decoded)."""
    return re.sub(r"a=(sendonly|recvonly|inactive)\b", "a=sendrecv", await real_answer(offer_sdp))


async def answer_with_many_candidates(offer_sdp: str) -> str:
    """A hundred and fifty addresses for the server to send connectivity checks to."""
    answer = await real_answer(offer_sdp)
    candidates = "".join(
        f"a=candidate:{n} 1 udp 2130706431 127.0.0.1 {40000 + n} typ host\r\n" for n in range(150)
    )
    return answer + candidates


async def test_hostile_signalling_is_refused_and_the_conference_goes_on(
    lobby: Lobby, open_page: Any, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    guest = await join(lobby.public_path, 200, display_name="Gail Guest")
    page, _ = await open_page(lobby.pat_path)
    assert await refused(page, "join_media") == "not_started"
    assert (await host.request("start"))["type"] == "result"

    assert await refused(page, "answer", connection="c", sdp="v=0") == "no_media"
    assert await refused(page, "offer", sdp="v=0") == "unknown_type"
    assert await refused(page, "answer", connection="c", sdp=12) == "bad_message"

    # Unreadable SDP: refused, and the media connection is closed.
    assert (await page.request("join_media"))["type"] == "result"
    offer = await page.receive("offer")
    this = offer["connection"]
    assert await refused(page, "answer", connection=this, sdp="v=0\r\nnot SDP\r\n") == "bad_sdp"
    assert await refused(page, "answer", connection=this, sdp="v=0") == "no_media"

    # An answer to an earlier connection's offer: refused, the current one is kept.
    assert (await page.request("join_media"))["type"] == "result"
    offer = await page.receive("offer")
    assert await refused(page, "answer", connection=this, sdp="v=0") == "stale"
    assert await refused(page, "answer", connection=offer["connection"], sdp="v=0") == "bad_sdp"

    # A hundred m-lines, a truncated offer, no fingerprint, far too long, sending on
    # every m-line, 150 ICE candidates: each refused before aiortc applies it (the
    # first would make a hundred decoder threads, the fifth a decoder per m-line).
    # (Another patient's page: one page sending all of this would be closed for
    # sending too many messages.)
    page, _ = await open_page(lobby.quinn_path)
    mangled = [
        hundred_m_lines,
        lambda offer: offer.split("m=video")[0],
        lambda offer: "\r\n".join(
            line for line in offer.split("\r\n") if "fingerprint" not in line
        ),
        lambda offer: offer + "a=x-padding:" + "x" * 60_000 + "\r\n",
    ]
    for mangle in mangled:
        assert (await page.request("join_media"))["type"] == "result"
        offer = await page.receive("offer")
        sdp = mangle(offer["sdp"])
        assert await refused(page, "answer", connection=offer["connection"], sdp=sdp) == "bad_sdp"
    for hostile_answer in (answer_sending_everywhere, answer_with_many_candidates):
        assert (await page.request("join_media"))["type"] == "result"
        offer = await page.receive("offer")
        sdp = await hostile_answer(offer["sdp"])
        assert await refused(page, "answer", connection=offer["connection"], sdp=sdp) == "bad_sdp"
    room = app[keys.CONFERENCES].get(lobby.event_id).room  # type: ignore[union-attr]
    assert len(room.present) == 0

    # The host's controls refuse what makes no sense, and only the host has them.
    assert await refused(host, "set_shown", participant="nobody", shown=True) == (
        "unknown_participant"
    )
    assert await refused(host, "set_permission", participant=guest.id, permission="all") == (
        "bad_permission"
    )
    assert await refused(guest, "set_permission", participant=host.id, permission="none") == (
        "not_host"
    )

    # Meanwhile the others hold their conference, and a second answer is out of turn.
    introduce([host, guest])
    for participant in (host, guest):
        await enter(participant)
    await receive_exactly({host: of((guest, BOTH)), guest: of((host, BOTH))})
    assert guest.pc is not None
    again = {"connection": guest.connection, "sdp": guest.pc.localDescription.sdp}
    assert await refused(guest, "answer", **again) == "out_of_turn"
    await receive_exactly({host: of((guest, BOTH)), guest: of((host, BOTH))})


def test_a_browser_with_many_addresses_keeps_the_candidates_that_cross_a_nat() -> None:
    """A laptop with a VPN and IPv6 may offer a few dozen candidates: the server
    keeps twenty, UDP first, relays and server-reflexive ones before host ones."""
    hosts = [
        f"a=candidate:h{n} 1 udp {2122260223 - n} 10.0.{n}.2 5000{n % 10} typ host"
        for n in range(25)
    ]
    tcp = [
        f"a=candidate:t{n} 1 tcp {1518280447 - n} 10.0.{n}.2 9 typ host tcptype active"
        for n in range(5)
    ]
    relay = ["a=candidate:r1 1 udp 41885439 203.0.113.9 3478 typ relay raddr 0.0.0.0 rport 0"]
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n" + "\r\n".join(hosts + tcp + relay)
    sdp += "\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\n"
    spread = spread_candidates(sdp)
    audio, video = spread.split("m=video")
    for section in (audio, video):
        kept = [line for line in section.split("\r\n") if line.startswith("a=candidate:")]
        assert len(kept) == 20
        assert relay[0] in kept
        assert not any(" tcp " in line for line in kept)
