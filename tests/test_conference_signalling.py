"""Malformed and hostile signalling on the conference's websocket: each is refused
with a clear error, the sender's media connection is dropped where it must be, and
the conference goes on for everyone else."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from clinicconf import keys

from .lobby_helpers import Lobby, Page
from .lobby_helpers import lobby as lobby
from .lobby_helpers import open_page as open_page
from .lobby_helpers import settings as settings
from .media_peers import Join, MediaParticipant
from .media_peers import join as join
from .test_conference_media import BOTH, enter, introduce, of, receive_exactly


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


async def test_hostile_signalling_is_refused_and_the_conference_goes_on(
    lobby: Lobby, open_page: Any, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    guest = await join(lobby.public_path, 200, display_name="Gail Guest")
    page, _ = await open_page(lobby.pat_path)
    assert await refused(page, "join_media") == "not_started"
    assert (await host.request("start"))["type"] == "result"

    assert await refused(page, "answer", sdp="v=0") == "no_media"
    assert await refused(page, "offer", sdp="v=0") == "unknown_type"
    assert await refused(page, "answer", sdp=12) == "bad_message"

    # Unreadable SDP: refused, and the media connection is closed.
    assert (await page.request("join_media"))["type"] == "result"
    offer = await page.receive("offer")
    assert await refused(page, "answer", sdp="v=0\r\nthis is not SDP\r\n") == "bad_sdp"
    assert await refused(page, "answer", sdp="v=0") == "no_media"

    # A hundred m-lines, a truncated offer, no fingerprint, far too long: each refused
    # before aiortc sees it (it would make a hundred decoder threads of the first).
    mangled = [
        hundred_m_lines(offer["sdp"]),
        offer["sdp"].split("m=video")[0],
        "\r\n".join(line for line in offer["sdp"].split("\r\n") if "fingerprint" not in line),
        offer["sdp"] + "a=x-padding:" + "x" * 60_000 + "\r\n",
    ]
    for sdp in mangled:
        assert (await page.request("join_media"))["type"] == "result"
        await page.receive("offer")
        assert await refused(page, "answer", sdp=sdp) == "bad_sdp"
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
    # Recording is chosen before the start.
    assert await refused(host, "set_options", moderator=False, recording=True) == (
        "already_started"
    )

    # Meanwhile the others hold their conference, and a second answer is out of turn.
    introduce([host, guest])
    for participant in (host, guest):
        await enter(participant)
    await receive_exactly({host: of((guest, BOTH)), guest: of((host, BOTH))})
    assert await refused(guest, "answer", sdp=guest.pc.localDescription.sdp) == "out_of_turn"  # type: ignore[union-attr]
    await receive_exactly({host: of((guest, BOTH)), guest: of((host, BOTH))})
