"""An ended conference can open again (issue 13, item 11): a host's "Reopen" while the
event's time lasts undoes an "End Conference for Everyone" pressed by mistake, and
moving the event to later times (the event's edit form) opens it for the new
invitations. Either way the pages that come join it, and are not closed as ended."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import expect

from clinicconf import audit, keys
from clinicconf.conference.identity import Closing
from clinicconf.config import Settings
from clinicconf.db import utc_now
from clinicconf.schedule import EventInput
from clinicconf.web.protocol import close_code

from ...support.accounts import Account
from ...support.browser import serve, served_settings
from ...support.clinic import sign_in
from ...support.lobby import Lobby, Page, socket_path
from ...support.servers import AiohttpClient, Client, wait_until
from ...support.visitors import WAITING, Links, Visitors

LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # the edit form's times; the test clinic's zone is UTC


async def ok(page: Page, type_: str, **fields: Any) -> None:
    answer = await page.request(type_, **fields)
    assert answer["type"] == "result", answer


async def end_for_everyone(host: Page, *others: Page) -> None:
    await ok(host, "start")
    await host.send("end")
    for page in (host, *others):
        assert await page.closed() == close_code(Closing.ENDED)


async def turned_away_as_ended(client: Client, path: str) -> bool:
    """A page opened now on `path` says hello and is closed as ended."""
    page = Page(await client.ws_connect(path))
    await page.send("hello", client_key=secrets.token_urlsafe(16))
    return await page.closed() == close_code(Closing.ENDED)


async def joins_and_stays(open_page: Any, path: str) -> dict[str, Any]:
    """A page opened on `path` is welcomed, and its socket stays open."""
    page, welcome = await open_page(path)
    assert (await page.request("ping"))["type"] == "result"
    return dict(welcome)


async def reopenings(app: web.Application, event_id: int) -> list[str]:
    entries = await audit.entries(app[keys.DATABASE], event_id=event_id)
    return [e["detail"] for e in entries if e["action"] == "conference_reopened"]


async def test_a_host_reopens_a_conference_ended_by_mistake(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    pat, _ = await open_page(lobby.pat_path)
    # Not ended: nothing to reopen.
    assert (await host.request("reopen"))["code"] == "not_ended"
    await end_for_everyone(host, pat)
    assert await turned_away_as_ended(client, lobby.pat_path)

    # The host's page asks first, before its hello, then joins the conference anew.
    again = Page(await client.ws_connect(lobby.host_path))
    await ok(again, "reopen")
    await again.send("hello", client_key=secrets.token_urlsafe(16))
    welcome = await again.receive("welcome")
    assert welcome["started"] is False
    pat_welcome = await joins_and_stays(open_page, lobby.pat_path)
    assert pat_welcome["started"] is False
    await ok(again, "start")
    assert await reopenings(app, lobby.event_id) == ['{"by": "host"}']


async def test_only_a_host_can_reopen(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    await end_for_everyone(host)
    # A patient's or a guest's page on an ended conference is closed at once: what it
    # sends is never read.
    for path in (lobby.pat_path, lobby.public_path):
        page = Page(await client.ws_connect(path))
        await page.send("reopen")
        assert await page.closed() == close_code(Closing.ENDED)
    assert await turned_away_as_ended(client, lobby.host_path)
    assert await reopenings(app, lobby.event_id) == []


@dataclass(frozen=True)
class Session:
    event_id: int
    host_path: str
    pat_path: str


async def new_session(
    app: web.Application, lobby: Lobby, start: datetime, end: datetime
) -> Session:
    """An event of its own with the lobby's people (the host: Ada)."""
    scheduler = app[keys.SCHEDULER]
    template = await scheduler.get_event(lobby.event_id)
    saved = await scheduler.create_event(
        lobby.host,
        EventInput(
            "Short session", template.event_type.id, start, end,
            [s.id for s in template.staff], [p.id for p in template.patients],
        ),
    )  # fmt: skip
    event_id = saved.event.id
    return Session(
        event_id,
        await socket_path(app, event_id, "staff", lobby.host.id),
        await socket_path(app, event_id, "patient", template.patients[0].id),
    )


async def reschedule(
    client: Client, csrf: str, app: web.Application, event_id: int, start: datetime, end: datetime
) -> None:
    """Save the event's edit form with these times, a new title, and the same people."""
    event = await app[keys.SCHEDULER].get_event(event_id)
    form = [
        ("csrf_token", csrf),
        ("title", event.title + " (moved)"),
        ("event_type_id", str(event.event_type.id)),
        ("start", start.strftime(LOCAL_INPUT)),
        ("end", end.strftime(LOCAL_INPUT)),
        ("record_patient_id", ""),
        *(("staff_ids", str(s.id)) for s in event.staff),
        *(("patient_ids", str(p.id)) for p in event.patients),
    ]
    async with client.post(f"/events/{event_id}/edit", data=form) as resp:
        assert resp.url.path == f"/events/{event_id}", await resp.text()


async def test_rescheduling_an_ended_conference_opens_it_again(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application, admin: Account
) -> None:
    # Whole minutes, as the edit form has them.
    start = utc_now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    session = await new_session(app, lobby, start, start + timedelta(hours=1))
    host, _ = await open_page(session.host_path)
    pat, _ = await open_page(session.pat_path)
    await end_for_everyone(host, pat)

    # Only its title changed: still ended.
    csrf = await sign_in(client, admin)
    await reschedule(client, csrf, app, session.event_id, start, start + timedelta(hours=1))
    assert await turned_away_as_ended(client, session.pat_path)

    later = start + timedelta(minutes=15)
    await reschedule(client, csrf, app, session.event_id, later, later + timedelta(hours=1))
    assert (await joins_and_stays(open_page, session.pat_path))["started"] is False
    assert (await joins_and_stays(open_page, session.host_path))["started"] is False
    assert await reopenings(app, session.event_id) == ['{"by": "rescheduled"}']


async def test_a_conference_ended_by_its_time_opens_again_when_moved_later(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application, admin: Account
) -> None:
    """Ended by the clock and no longer held by the server (nobody is left in it): the
    change is made to what the database holds."""
    start = utc_now() - timedelta(minutes=5)
    session = await new_session(app, lobby, start, start + timedelta(hours=1))
    host, _ = await open_page(session.host_path)
    await ok(host, "start")
    # The clinic shortens the started event to an end just passed: the clock ends the
    # conference at once, with no page having to open in a second of a slow machine.
    await shorten(app, lobby, session.event_id, utc_now() - timedelta(seconds=1))
    await host.closed()

    async def forgotten() -> bool:
        return app[keys.CONFERENCES].get(session.event_id) is None

    await wait_until(forgotten)
    assert await endings(app, session.event_id) == ['{"by": "time"}']

    csrf = await sign_in(client, admin)
    later = utc_now() + timedelta(minutes=5)
    await reschedule(client, csrf, app, session.event_id, later, later + timedelta(hours=1))
    assert (await joins_and_stays(open_page, session.pat_path))["started"] is False
    assert await reopenings(app, session.event_id) == ['{"by": "rescheduled"}']


async def shorten(app: web.Application, lobby: Lobby, event_id: int, end: datetime) -> None:
    scheduler = app[keys.SCHEDULER]
    event = await scheduler.get_event(event_id)
    await scheduler.update_event(
        lobby.host,
        event_id,
        EventInput(
            event.title, event.event_type.id, event.start, end,
            [s.id for s in event.staff], [p.id for p in event.patients],
        ),
    )  # fmt: skip


async def endings(app: web.Application, event_id: int) -> list[str]:
    entries = await audit.entries(app[keys.DATABASE], event_id=event_id)
    return [e["detail"] for e in entries if e["action"] == "conference_ended"]


class TestTheEndedPageInChromium:
    """The host's page, once the conference has ended, offers "Reopen the conference";
    the others' pages do not. Served where its links point, as for every browser test."""

    @pytest.fixture
    def settings(self, settings: Settings, unused_tcp_port: int) -> Settings:
        return served_settings(settings, unused_tcp_port)

    @pytest.fixture
    async def client(self, aiohttp_client: AiohttpClient, settings: Settings) -> Client:
        return await serve(aiohttp_client, settings)

    async def test_the_host_reopens_from_the_ended_page(
        self, visitors: Visitors, links: Links
    ) -> None:
        host = await visitors.open(links.host)
        patient = await visitors.open(links.pat)
        await expect(patient.get_by_text(WAITING)).to_be_visible()
        await host.get_by_role("button", name="Start Conference").click()
        host.on("dialog", lambda dialog: dialog.accept())
        await host.get_by_role("button", name="End Conference for Everyone").click()
        for page in (host, patient):
            await expect(page.get_by_role("alert")).to_have_text("The host ended the conference.")
        await expect(patient.get_by_role("button", name="Reopen the conference")).to_have_count(0)

        await host.get_by_role("button", name="Reopen the conference").click()
        # The page loads afresh, in the lobby of the conference opened again.
        await expect(host.get_by_role("button", name="Start Conference")).to_be_enabled()
        await patient.reload()
        await expect(patient.get_by_text(WAITING)).to_be_visible()
