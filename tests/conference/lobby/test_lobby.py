"""The landing page's websocket (docs/lobby-protocol.md), spoken to as the pages do:
presence, who sees whom, the host's options and start, reconnects, cancellation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from clinicconf import audit, keys
from clinicconf.config import Settings
from clinicconf.schedule import EventInput

from ...support.lobby import GRACE_SECONDS, Lobby, Page, by_name
from ...support.servers import Client


async def test_the_host_sees_everyone_invited_and_who_arrives(lobby: Lobby, open_page: Any) -> None:
    host, welcome = await open_page(lobby.host_path)
    assert welcome["you"] == {
        "id": welcome["you"]["id"], "kind": "staff", "name": "Ada Admin", "host": True,
    }  # fmt: skip
    assert welcome["event"]["title"] == "Group session"
    assert welcome["started"] is False
    seen = by_name(welcome)
    assert {name: p["active"] for name, p in seen.items()} == {
        "Ada Admin": True, "Sam Staff": False, "Pat Patel": False, "Quinn Quist": False,
    }  # fmt: skip

    await open_page(lobby.pat_path)
    arrived = await host.presence()
    assert (arrived["name"], arrived["active"], arrived["id"]) == (
        "Pat Patel", True, seen["Pat Patel"]["id"],
    )  # fmt: skip


async def test_a_patient_sees_the_staff_and_only_themselves(lobby: Lobby, open_page: Any) -> None:
    await open_page(lobby.host_path)
    _, welcome = await open_page(lobby.pat_path)
    assert welcome["you"]["host"] is False
    assert sorted(by_name(welcome)) == ["Ada Admin", "Pat Patel", "Sam Staff"]
    assert by_name(welcome)["Ada Admin"]["active"] is True


async def test_a_guest_sees_staff_and_guests_by_name_and_patients_as_patient(
    lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    await open_page(lobby.pat_path)
    await host.presence()
    _, welcome = await open_page(lobby.public_path, display_name="  Gail   Guest ")
    assert welcome["you"]["name"] == "Gail Guest"
    names = sorted(p["name"] for p in welcome["participants"])
    assert names == ["Ada Admin", "Gail Guest", "Patient", "Patient", "Sam Staff"]
    assert (await host.presence())["name"] == "Gail Guest"

    _, other_welcome = await open_page(lobby.public_path, display_name="Gus")
    assert "Gail Guest" in by_name(other_welcome)


async def test_only_staff_can_change_options_or_start(lobby: Lobby, open_page: Any) -> None:
    await open_page(lobby.host_path)
    patient, _ = await open_page(lobby.pat_path)
    guest, _ = await open_page(lobby.public_path, display_name="Gail")
    for page in (patient, guest):
        refused = await page.request("start")
        assert refused["code"] == "not_host"
        refused = await page.request("set_options", moderator=True, recording=True)
        assert refused["code"] == "not_host"

    # Nothing changed: a newcomer finds the conference waiting with the defaults.
    _, welcome = await open_page(lobby.colleague_path)
    assert welcome["started"] is False
    assert welcome["options"] == {
        "moderator": False,
        "recording": False,
        "locked": False,
        "waiting_room": False,
    }
    assert welcome["you"]["host"] is True


async def test_the_hosts_options_and_start_reach_everyone_at_once(
    lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    patient, _ = await open_page(lobby.pat_path)
    assert (await host.request("set_options", moderator=True, recording=True))["type"] == "result"
    changed = (await patient.receive("options"))["options"]
    assert (changed["moderator"], changed["recording"]) == (True, True)

    assert (await host.request("start"))["type"] == "result"
    assert (await patient.receive("started"))["started_at"] > 0
    _, late = await open_page(lobby.quinn_path)
    assert late["started"] is True
    assert (late["options"]["moderator"], late["options"]["recording"]) == (True, True)

    again = await host.request("start")
    assert again["code"] == "already_started"
    actions = [
        e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=lobby.event_id)
    ]
    assert actions.count("conference_started") == 1
    assert "options_changed" in actions and "joined" in actions


async def test_the_host_sees_what_a_guest_arriving_in_moderator_mode_may_use(
    lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    assert (await host.request("set_options", moderator=True, recording=False))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    await open_page(lobby.public_path, display_name="Gail")
    gail = await host.presence()
    # Told before the arrival itself: the host's controls show it from the first moment.
    moderation = [m for m in host.passed_over if m["type"] == "moderation"][-1]
    assert moderation["permissions"] == {gail["id"]: "none"}


async def test_several_tabs_are_one_presence_and_a_reload_changes_nothing(
    lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    first, _ = await open_page(lobby.pat_path)
    second, _ = await open_page(lobby.pat_path)
    assert (await host.presence())["active"] is True  # one arrival for two tabs

    await first.ws.close()
    await second.ws.close()
    _, reloaded = await open_page(lobby.pat_path)  # back within the grace period
    assert by_name(reloaded)["Pat Patel"]["active"] is True
    await asyncio.sleep(GRACE_SECONDS + 0.5)
    await host.request("ping")
    assert [m for m in host.passed_over if m["type"] == "presence"] == []


async def test_whoever_leaves_turns_inactive_after_the_grace_period(
    lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    patient, _ = await open_page(lobby.pat_path)
    guest, _ = await open_page(lobby.public_path, display_name="Gail")
    await host.presence()
    await host.presence()
    await patient.ws.close()
    await guest.ws.close()
    gone = {p["name"]: p["active"] for p in (await host.presence(), await host.presence())}
    assert gone == {"Pat Patel": False, "Gail": False}
    _, welcome = await open_page(lobby.colleague_path)
    assert "Gail" not in by_name(welcome)  # guests are listed only while present
    assert by_name(welcome)["Pat Patel"]["active"] is False


async def test_cancelling_the_event_closes_every_page_with_the_news(
    lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    pages = [(await open_page(path))[0] for path in (lobby.host_path, lobby.pat_path)]
    await app[keys.SCHEDULER].cancel_event(lobby.host, lobby.event_id)
    for page in pages:
        assert (await page.receive("cancelled"))["type"] == "cancelled"
        assert await page.closed() == 4410


async def test_a_page_whose_link_cannot_be_used_is_told_why_and_closed(
    client: Client, lobby: Lobby, app: web.Application, settings: Settings
) -> None:
    """By a close code the page shows, so that it stops reconnecting."""
    for path in ("/j/" + "x" * 43 + "/ws", lobby.public_path.replace("/p/", "/j/")):
        assert await Page(await client.ws_connect(path)).closed() == 4404
    await app[keys.SCHEDULER].cancel_event(lobby.host, lobby.event_id)
    assert await Page(await client.ws_connect(lobby.pat_path)).closed() == 4410


async def test_a_page_not_yet_joined_is_closed_with_its_cancelled_event(
    client: Client, lobby: Lobby, app: web.Application
) -> None:
    """A guest still typing their name is not left in a conference that is gone."""
    typing = Page(await client.ws_connect(lobby.public_path))
    await typing.request("ping")  # the socket is open, no hello yet
    await app[keys.SCHEDULER].cancel_event(lobby.host, lobby.event_id)
    assert await typing.closed() == 4410


async def test_a_patient_sees_a_public_guest_as_guest_never_by_name(
    lobby: Lobby, open_page: Any
) -> None:
    patient, _ = await open_page(lobby.pat_path)
    _, welcome = await open_page(lobby.public_path, display_name="Gail")
    assert "Pat Patel" not in by_name(welcome)  # (the guest sees "Patient")
    _, host_welcome = await open_page(lobby.host_path)
    assert "Gail" in by_name(host_welcome)
    await patient.request("ping")
    heard_of = [m["participant"]["name"] for m in patient.passed_over if m["type"] == "presence"]
    assert heard_of == ["Guest", "Ada Admin"]  # told a guest came in, never who
    assert "Gail" not in json.dumps(patient.passed_over)


@pytest.mark.parametrize("public", [False, True])
async def test_a_page_must_say_hello_properly_first(
    client: Client, lobby: Lobby, public: bool
) -> None:
    page = Page(await client.ws_connect(lobby.public_path if public else lobby.pat_path))
    assert (await page.request("start"))["code"] == "not_ready"
    assert (await page.request("hello", client_key="short"))["code"] == "bad_message"
    if public:
        for name in ("", "   ", "x" * 61):
            answer = await page.request("hello", client_key="k" * 20, display_name=name)
            assert answer["code"] == "bad_message"
    await page.send("hello", client_key="k" * 20, display_name="Gail")
    assert (await page.receive("welcome"))["you"]["kind"] == ("guest" if public else "patient")
    assert (await page.request("hello", client_key="k" * 20))["code"] == "already_joined"
    await page.ws.close()


async def test_changing_the_event_brings_the_pages_up_to_date(
    lobby: Lobby, open_page: Any, app: web.Application, settings: Settings
) -> None:
    quinn, _ = await open_page(lobby.quinn_path)
    event = await app[keys.SCHEDULER].get_event(lobby.event_id)
    await app[keys.SCHEDULER].update_event(
        lobby.host,
        event.id,
        EventInput(
            "Group session, moved", event.event_type.id, event.start, event.end,
            [s.id for s in event.staff], [event.patients[0].id],
        ),
    )  # fmt: skip
    assert await quinn.closed() == 4000
    _, welcome = await open_page(lobby.host_path)
    assert welcome["event"]["title"] == "Group session, moved"
    assert "Quinn Quist" not in by_name(welcome)
