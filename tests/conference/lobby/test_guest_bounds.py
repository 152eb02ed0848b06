"""No holder of a link can lock the others out or fill the server (issue 13, items 5
and 6): pages that never say hello, many guests from one address, one person's link
opened again and again, a crowd in the waiting room; each bound closes only the
excess, with a code the page shows, and the people linked to the event still get in
and stay. And a thousand throwaway guests leave bounded rows and memory behind."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from clinicconf import audit, keys
from clinicconf.conference import admission
from clinicconf.conference.admission import (
    MAX_GUEST_PAGES_PER_ADDRESS,
    MAX_LEFT_GUESTS,
    MAX_PAGES_PER_PERSON,
    MAX_UNIDENTIFIED_PER_ADDRESS,
    MAX_WAITING,
)
from clinicconf.conference.identity import Closing
from clinicconf.config import Forwarding, Settings
from clinicconf.web.protocol import close_code

from ...support.lobby import GRACE_SECONDS, Lobby, Page
from ...support.servers import LOOPBACK_ICE, Client

# What the public link's holder opened before the bounds: 500 sockets filled the
# conference, and everyone after them was closed as "full".
OLD_PAGE_SLOTS = 500


@pytest.fixture
def settings(tmp_path: Path, forwarding: Forwarding) -> Settings:
    """The lobby's, with the test client as a reverse proxy: each guest may come from
    an address of its own (X-Forwarded-For)."""
    return Settings(
        data_dir=tmp_path / "data",
        presence_grace_seconds=GRACE_SECONDS,
        ice_addresses=LOOPBACK_ICE,
        forwarding=forwarding,
        trusted_proxies="127.0.0.1",
    )


def from_address(number: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.0.{number // 250}.{number % 250 + 1}"}


async def silent_page(client: Client, path: str, address: int = 0) -> Page:
    return Page(await client.ws_connect(path, headers=from_address(address)))


async def guest_page(client: Client, path: str, address: int = 0) -> Page:
    page = await silent_page(client, path, address)
    await page.send("hello", client_key=secrets.token_urlsafe(16), display_name="Guest")
    return page


async def first_word(page: Page) -> str:
    """`welcome`, `waiting_room`, or the close code the page was sent away with."""
    message = await page.ws.receive(timeout=5)
    if message.type == WSMsgType.TEXT:
        return str(message.json()["type"])
    return str(message.data)


async def linked_people_get_in_and_stay(lobby: Lobby, open_page: Any) -> None:
    for path in (lobby.host_path, lobby.pat_path):
        page, welcome = await open_page(path)
        assert welcome["type"] == "welcome"
        assert (await page.request("ping"))["type"] == "result"


async def test_pages_that_never_say_hello_fill_no_ones_place(
    client: Client, lobby: Lobby, open_page: Any
) -> None:
    for number in range(OLD_PAGE_SLOTS):
        page = await silent_page(client, lobby.public_path)
        # Beyond its few, each is closed at once, saying why.
        if number >= MAX_UNIDENTIFIED_PER_ADDRESS:
            assert await page.closed() == close_code(Closing.TOO_MANY_PAGES)
    await linked_people_get_in_and_stay(lobby, open_page)
    # A guest from another address is not held up by them either.
    assert await first_word(await guest_page(client, lobby.public_path, 1)) == "welcome"


async def test_many_guests_from_one_address_leave_room_for_everyone_else(
    client: Client, lobby: Lobby, open_page: Any
) -> None:
    for _ in range(MAX_GUEST_PAGES_PER_ADDRESS):
        assert await first_word(await guest_page(client, lobby.public_path)) == "welcome"
    extra = await guest_page(client, lobby.public_path)
    assert await first_word(extra) == str(close_code(Closing.TOO_MANY_PAGES))
    await linked_people_get_in_and_stay(lobby, open_page)
    assert await first_word(await guest_page(client, lobby.public_path, 1)) == "welcome"


async def test_one_persons_link_opened_again_and_again_locks_out_only_that_person(
    client: Client, lobby: Lobby, open_page: Any
) -> None:
    for _ in range(MAX_PAGES_PER_PERSON):
        await open_page(lobby.quinn_path)
    extra = Page(await client.ws_connect(lobby.quinn_path))
    assert await extra.closed() == close_code(Closing.TOO_MANY_PAGES)
    await linked_people_get_in_and_stay(lobby, open_page)


async def test_a_crowd_in_the_waiting_room_keeps_no_one_in_out(
    client: Client, lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    gail, _ = await open_page(lobby.public_path, display_name="Gail Guest")
    answer = await host.request("set_access", locked=False, waiting_room=True)
    assert answer["type"] == "result"
    for number in range(MAX_WAITING):
        waiting = await guest_page(client, lobby.public_path, number + 1)
        assert await first_word(waiting) == "waiting_room"
    one_more = await guest_page(client, lobby.public_path, MAX_WAITING + 1)
    assert await first_word(one_more) == str(close_code(Closing.FULL))
    # Gail, who was in, comes back in another tab; the linked people join.
    assert (await gail.request("ping"))["type"] == "result"
    await linked_people_get_in_and_stay(lobby, open_page)


# --- what throwaway guests leave behind --------------------------------------------

THROWAWAY_GUESTS = 1000


async def test_a_thousand_throwaway_guests_leave_bounded_rows_and_memory(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    async with host.reading_meanwhile():  # for longer than the heartbeat, on a slow machine
        for number in range(THROWAWAY_GUESTS):
            async with client.get(lobby.public_path.removesuffix("/ws")) as landing:
                assert landing.status == 200
            page = await guest_page(client, lobby.public_path, number)
            assert await first_word(page) == "welcome"
            await page.send("leave")
            assert await page.closed() == 1000
    assert (await host.request("ping"))["type"] == "result"
    conference = app[keys.CONFERENCES].get(lobby.event_id)
    assert conference is not None
    await conference.saved()

    db = app[keys.DATABASE]
    kept = await db.fetchall(
        "SELECT person_key FROM conference_people WHERE event_id = ? AND person_key LIKE 'guest:%'",
        (lobby.event_id,),
    )
    assert len(kept) == MAX_LEFT_GUESTS
    # In memory: the linked people, and what is kept of the guests who left.
    assert {p.identity.kind for p in conference._presence} == {"staff", "patient"}
    assert len(conference._saver.people) == MAX_LEFT_GUESTS + 1  # and the host
    # Each guest opened the link, joined and left: three rows each, until the bound.
    entries = await audit.entries(db, event_id=lobby.event_id)
    guest_rows = [e for e in entries if e["actor_kind"] == "guest"]
    assert len(guest_rows) == audit.MAX_GUEST_ROWS_PER_EVENT
    [tally] = [e for e in entries if e["action"] == audit.GUEST_TALLY]
    counted = Counter(json.loads(tally["detail"]))
    counted.update(e["action"] for e in guest_rows)
    assert counted == dict.fromkeys(["link_opened", "joined", "left"], THROWAWAY_GUESTS)


async def test_a_guest_gone_long_enough_is_a_newcomer_again(
    client: Client, lobby: Lobby, open_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _ = await open_page(lobby.host_path)
    key = secrets.token_urlsafe(16)
    gail, _ = await open_page(lobby.public_path, client_key=key, display_name="Gail Guest")
    answer = await host.request("set_access", locked=True, waiting_room=False)
    assert answer["type"] == "result"
    await gail.send("leave")
    assert await gail.closed() == 1000
    # Forgotten at the next guest's going (the real wait: FORGET_GUESTS_AFTER_SECONDS).
    monkeypatch.setattr(admission, "FORGET_GUESTS_AFTER_SECONDS", 0.0)
    other, _ = await open_page(lobby.quinn_path)
    await other.send("leave")
    assert await other.closed() == 1000
    again = Page(await client.ws_connect(lobby.public_path))
    await again.send("hello", client_key=key, display_name="Gail Guest")
    assert await first_word(again) == str(close_code(Closing.LOCKED))
