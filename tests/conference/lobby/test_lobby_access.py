"""Who may come in on a Public Conference's link: the host's waiting room, lock and
removal (issue 7), over the landing page's websocket, as the pages speak it."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from clinicconf import audit, keys
from clinicconf.conference.identity import Closing
from clinicconf.web.protocol import close_code

from ...support.lobby import GRACE_SECONDS, Lobby, Page
from ...support.servers import Client


async def knock(client: Client, path: str, name: str, key: str | None = None) -> Page:
    """A guest opens the public link and says hello: the first thing they hear."""
    page = Page(await client.ws_connect(path))
    await page.send("hello", client_key=key or secrets.token_urlsafe(16), display_name=name)
    return page


async def first_word(page: Page) -> str:
    """`welcome`, `waiting_room`, or the close code the page was sent away with."""
    message = await page.ws.receive()
    if message.type.name == "TEXT":
        return str(message.json()["type"])
    return str(message.data)


async def waiting_names(host: Page) -> list[str]:
    return [guest["name"] for guest in (await host.receive("waiting"))["guests"]]


async def presence_of(page: Page, name: str) -> dict[str, Any]:
    """The latest news of `name`'s presence: among what came while the page awaited
    an answer, or the next to come."""
    for message in reversed(page.passed_over):
        if message["type"] == "presence" and message["participant"]["name"] == name:
            page.passed_over.clear()
            return dict(message["participant"])
    while (participant := await page.presence())["name"] != name:
        pass
    return participant


async def actions(app: web.Application, event_id: int) -> list[str]:
    return [e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=event_id)]


async def ok(page: Page, type_: str, **fields: Any) -> None:
    answer = await page.request(type_, **fields)
    assert answer["type"] == "result", answer


async def test_the_host_lets_guests_in_one_by_one_or_all_at_once(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, welcome = await open_page(lobby.host_path)
    assert welcome["waiting"] == []
    await ok(host, "set_access", locked=False, waiting_room=True)

    # Gail waits: she sees nobody, and the host sees her name.
    gail = await knock(client, lobby.public_path, "Gail Guest")
    assert await first_word(gail) == "waiting_room"
    assert await waiting_names(host) == ["Gail Guest"]
    _, late_welcome = await open_page(lobby.colleague_path)
    [waiting] = late_welcome["waiting"]
    assert waiting["name"] == "Gail Guest"

    await ok(host, "let_in", guest=waiting["id"])
    welcome_gail = await gail.receive("welcome")
    assert welcome_gail["you"]["name"] == "Gail Guest"
    assert (await presence_of(host, "Gail Guest"))["active"] is True

    # Bert is turned away, and stays away on that browser for the event.
    bert_key = secrets.token_urlsafe(16)
    bert = await knock(client, lobby.public_path, "Bert", bert_key)
    assert await first_word(bert) == "waiting_room"
    [waiting] = (await host.receive("waiting"))["guests"]
    await ok(host, "turn_away", guest=waiting["id"])
    assert await bert.closed() == close_code(Closing.TURNED_AWAY)
    again = await knock(client, lobby.public_path, "Bert", bert_key)
    assert await first_word(again) == str(close_code(Closing.TURNED_AWAY))

    # Two more wait; all let in at once. Then, with the waiting room off, whoever
    # comes goes straight in.
    cora = await knock(client, lobby.public_path, "Cora")
    dan = await knock(client, lobby.public_path, "Dan")
    for page in (cora, dan):
        assert await first_word(page) == "waiting_room"
    await ok(host, "let_in_all")
    for page in (cora, dan):
        assert (await page.receive("welcome"))["you"]["kind"] == "guest"
    await ok(host, "set_access", locked=False, waiting_room=False)
    assert await first_word(await knock(client, lobby.public_path, "Eve")) == "welcome"

    # Only a host decides; everything is in the audit log.
    assert (await gail.request("let_in_all"))["code"] == "not_host"
    actions = [
        e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=lobby.event_id)
    ]
    assert actions.count("guest_let_in") == 3 and actions.count("guest_turned_away") == 1


async def test_a_locked_conference_takes_no_new_guest(
    client: Client, lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    key = secrets.token_urlsafe(16)
    gail, _ = await open_page(lobby.public_path, client_key=key, display_name="Gail Guest")
    await ok(host, "set_access", locked=True, waiting_room=False)
    assert (await gail.receive("options"))["options"]["locked"] is True

    stranger = await knock(client, lobby.public_path, "Stranger")
    assert await first_word(stranger) == str(close_code(Closing.LOCKED))
    # Gail, already in, may reload; the patients' own links are not the public link.
    await gail.ws.close()
    back = await knock(client, lobby.public_path, "Gail Guest", key)
    assert await first_word(back) == "welcome"
    # Even after she was gone for good (her network dropped for longer): she was in.
    await back.ws.close()
    await asyncio.sleep(GRACE_SECONDS + 0.5)
    assert await first_word(await knock(client, lobby.public_path, "Gail Guest", key)) == "welcome"
    pat, _ = await open_page(lobby.pat_path)
    assert pat is not None


async def test_someone_removed_cannot_come_back_during_the_event(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    key = secrets.token_urlsafe(16)
    gail, gail_welcome = await open_page(
        lobby.public_path, client_key=key, display_name="Gail Guest"
    )
    pat, pat_welcome = await open_page(lobby.pat_path)
    await presence_of(host, "Pat Patel")

    await ok(host, "remove", participant=gail_welcome["you"]["id"])
    assert await gail.closed() == close_code(Closing.REMOVED)
    assert (await presence_of(host, "Gail Guest"))["active"] is False
    # Not on that browser; from the same network, only if a host lets them in.
    assert await first_word(await knock(client, lobby.public_path, "Gail", key)) == str(
        close_code(Closing.REMOVED)
    )
    newcomer = await knock(client, lobby.public_path, "G.")
    assert await first_word(newcomer) == "waiting_room"
    # Locking and unlocking lets in whoever waited, but not someone who waits because
    # of that address: a host lets them in, having looked.
    await ok(host, "set_access", locked=True, waiting_room=False)
    await ok(host, "set_access", locked=False, waiting_room=False)
    still_waiting = [m for m in host.passed_over if m["type"] == "waiting"][-1]
    assert [guest["name"] for guest in still_waiting["guests"]] == ["G."]

    # A patient removed finds their own link closed to them for the event.
    await ok(host, "remove", participant=pat_welcome["you"]["id"])
    assert await pat.closed() == close_code(Closing.REMOVED)
    again = Page(await client.ws_connect(lobby.pat_path))
    await again.send("hello", client_key=secrets.token_urlsafe(16))
    assert await first_word(again) == str(close_code(Closing.REMOVED))

    # A host cannot be removed, and only a host removes.
    _, colleague_welcome = await open_page(lobby.colleague_path)
    refused = await host.request("remove", participant=colleague_welcome["you"]["id"])
    assert refused["code"] == "cannot_remove_host"
    actions = [
        e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=lobby.event_id)
    ]
    assert actions.count("participant_removed") == 2
