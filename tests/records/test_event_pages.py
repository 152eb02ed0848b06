"""The Scheduler and the event pages, through the real app: forms, redirects, the
week view in the clinic's time zone, and the JSON calls of the pages' scripts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import audit, keys
from clinicconf.db import to_db_time, utc_now
from clinicconf.notify import outbox
from clinicconf.schedule import Patient

from ..support.accounts import Account
from ..support.clinic import CLINIC_ZONE, Clinic, event_form, json_headers, sign_in
from ..support.servers import wait_until

Client = TestClient[web.Request, web.Application]


async def follow_up(clinic: Clinic, *patients: Patient) -> int:
    """A telehealth follow-up on 6 May 2030 with Sam Staff and `patients`; its id."""
    saved = await clinic.event(
        "Follow-up",
        clinic.telehealth,
        "2030-05-06T10:00",
        "2030-05-06T10:30",
        patients=list(patients),
    )
    return saved.event.id


def day_column(html: str, day: str) -> str:
    match = re.search(rf'<section class="day[^"]*" data-date="{day}".*?</section>', html, re.S)
    assert match, f"no column for {day}"
    return match.group(0)


async def count(app: web.Application, table: str) -> int:
    row = await app[keys.DATABASE].fetchone(f"SELECT count(*) AS n FROM {table}")  # noqa: S608
    assert row is not None
    return int(row["n"])


async def test_creating_an_event_confirms_who_gets_an_invitation(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    csrf = await sign_in(client, staff)
    async with client.post("/events", data=event_form(csrf, clinic)) as resp:
        assert resp.status == 200
        assert resp.url.path == "/events/1"
        page = await resp.text()
    confirmation = page[page.index("Invitation emails will be sent to:") :]
    assert "<li>Pat Patient</li>" in confirmation
    assert "<li>Sam Staff</li>" in confirmation
    assert "No email address on file for: Quinn Quiet" in confirmation
    # 10:00 in the clinic (EDT, UTC-4) is 14:00 UTC.
    event = await clinic.scheduler.get_event(1)
    assert event.start == datetime(2030, 5, 6, 14, 0, tzinfo=UTC)
    assert [p.name for p in event.patients] == ["Pat Patient", "Quinn Quiet"]
    # The confirmation belongs to the save: the page opened later does not repeat it.
    async with client.get("/events/1") as resp:
        assert "Invitation emails will be sent to:" not in await resp.text()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end": "2030-05-06T09:00"}, "The end must be after the start."),
        ({"start": "tomorrow"}, "Enter a date and a time."),
        # The clocks go from 02:00 to 03:00 in New York that night.
        (
            {"start": "2030-03-10T02:30", "end": "2030-03-10T04:00"},
            "This time does not exist in the clinic",
        ),
        ({"title": "  "}, "This field is required."),
        ({"record_patient_id": "1"}, "Only a Public Conference names a patient record"),
    ],
)
async def test_a_refused_form_explains_and_writes_nothing(
    client: Client,
    app: web.Application,
    clinic: Clinic,
    staff: Account,
    changes: dict[str, str],
    message: str,
) -> None:
    csrf = await sign_in(client, staff)
    async with client.post("/events", data=event_form(csrf, clinic, **changes)) as resp:
        assert resp.status == 422
        page = await resp.text()
    assert message in page
    assert 'class="field-error"' in page
    # What was typed comes back, ticks included.
    assert f'value="{changes.get("end", "2030-05-06T10:30")}"' in page
    assert re.search(rf'value="{clinic.quinn.id}"\s+checked', page)
    assert await count(app, "events") == 0
    assert await count(app, "outbox") == 0


async def test_a_public_conference_may_name_a_patient_record(
    client: Client, clinic: Clinic, staff: Account
) -> None:
    csrf = await sign_in(client, staff)
    form = event_form(
        csrf,
        clinic,
        event_type_id=str(clinic.group.id),
        patient_ids=[],
        record_patient_id=str(clinic.pat.id),
    )
    async with client.post("/events", data=form) as resp:
        page = await resp.text()
    assert re.search(
        r"<dt>Patient record</dt>\s*<dd>Pat Patient <span class=\"tag\">MRN-1</span>", page
    )
    assert "No patients linked." in page


async def test_editing_an_event_starts_from_its_local_times(
    client: Client, clinic: Clinic, staff: Account
) -> None:
    saved = await clinic.event(
        "Follow-up", clinic.telehealth, "2030-05-06T10:00", "2030-05-06T10:30", patients=[]
    )
    csrf = await sign_in(client, staff)
    async with client.get(f"/events/{saved.event.id}/edit") as resp:
        page = await resp.text()
    assert 'value="2030-05-06T10:00"' in page
    assert 'value="Follow-up"' in page

    form = event_form(csrf, clinic, title="Second follow-up", patient_ids=[str(clinic.pat.id)])
    async with client.post(f"/events/{saved.event.id}/edit", data=form) as resp:
        assert resp.url.path == f"/events/{saved.event.id}"
        page = await resp.text()
    assert "<h1>Second follow-up</h1>" in page
    assert "Invitation emails will be sent to:" in page
    assert "Quinn Quiet" not in page


async def test_week_view_shows_an_event_on_its_local_day(
    client: Client, clinic: Clinic, staff: Account
) -> None:
    # 22:30 on Tuesday in New York is already Wednesday in UTC.
    await clinic.event(
        "Late call", clinic.group, "2030-05-07T22:30", "2030-05-07T23:15", patients=[clinic.pat]
    )
    cancelled = await clinic.event(
        "Dropped", clinic.telehealth, "2030-05-09T09:00", "2030-05-09T09:30", patients=[]
    )
    await clinic.scheduler.cancel_event(clinic.staff, cancelled.event.id)
    await sign_in(client, staff)

    async with client.get("/?week=2030-05-08") as resp:
        assert resp.status == 200
        page = await resp.text()
    tuesday = day_column(page, "2030-05-07")
    assert "Late call" in tuesday
    assert "22:30\N{EN DASH}23:15" in tuesday
    assert "Group session" in tuesday
    assert "data-public" in tuesday
    assert "Late call" not in day_column(page, "2030-05-08")
    thursday = day_column(page, "2030-05-09")
    assert "Dropped" in thursday
    assert "Cancelled" in thursday
    assert 'href="/?week=2030-04-29"' in page
    assert 'href="/?week=2030-05-13"' in page

    async with client.get("/?week=2030-05-13") as resp:
        assert "Late call" not in await resp.text()
    for unusable in ("someday", "0001-01-03", "9999-12-31"):
        async with client.get(f"/?week={unusable}") as resp:
            assert resp.status == 400
            assert "The week" in await resp.text()


async def test_this_week_is_the_default(client: Client, staff: Account) -> None:
    await sign_in(client, staff)
    async with client.get("/") as resp:
        page = await resp.text()
    today = datetime.now(ZoneInfo(CLINIC_ZONE)).date()
    assert 'aria-current="date"' in day_column(page, today.isoformat())
    monday = today - timedelta(days=today.weekday())
    assert re.findall(r'data-date="([0-9-]+)"', page) == [
        (monday + timedelta(days=n)).isoformat() for n in range(7)
    ]
    assert 'href="/events/new"' in page


async def test_copying_a_join_link_returns_it_and_is_audited(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    event_id = await follow_up(clinic, clinic.pat)
    csrf = await sign_in(client, staff)
    path = f"/events/{event_id}/people/patient/{clinic.pat.id}/link"

    async with client.post(path, headers=json_headers(csrf)) as resp:
        assert resp.status == 200
        body = await resp.json()
    expected = await clinic.scheduler.links.url_for(
        app[keys.DATABASE], event_id, "patient", clinic.pat.id
    )
    assert body == {"url": expected}
    copied = [e for e in await audit.entries(app[keys.DATABASE], event_id=event_id)]
    assert [(e["action"], e["actor_id"], e["subject_kind"], e["subject_id"]) for e in copied][
        -1
    ] == ("link_copied", staff.id, "patient", clinic.pat.id)

    # A patient who is not on this event has no link here.
    other = f"/events/{event_id}/people/patient/{clinic.quinn.id}/link"
    async with client.post(other, headers=json_headers(csrf)) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["message"] == "This patient is not linked to the event."
    # An id beyond SQLite's integers is simply not found.
    async with client.get("/events/123456789012345678901234") as resp:
        assert resp.status == 404


async def test_a_json_call_without_the_csrf_header_is_refused(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    event_id = await follow_up(clinic, clinic.pat)
    await sign_in(client, staff)
    path = f"/events/{event_id}/people/patient/{clinic.pat.id}/link"
    async with client.post(path, headers={"Accept": "application/json"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    async with client.post(path, headers=json_headers("forged")) as resp:
        assert resp.status == 403
    entries = await audit.entries(app[keys.DATABASE], event_id=event_id)
    assert "link_copied" not in [e["action"] for e in entries]


async def test_my_link_and_public_link(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    group = await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[clinic.pat]
    )
    in_person = await clinic.event(
        "Visit", clinic.in_person, "2030-05-06T12:00", "2030-05-06T12:30", patients=[]
    )
    csrf = await sign_in(client, staff)
    db = app[keys.DATABASE]

    async with client.post(
        f"/events/{group.event.id}/public-link", headers=json_headers(csrf)
    ) as r:
        assert (await r.json())["url"] == await clinic.scheduler.links.url_for(
            db, group.event.id, "public", None
        )
    async with client.post(f"/events/{group.event.id}/my-link", headers=json_headers(csrf)) as r:
        assert (await r.json())["url"] == await clinic.scheduler.links.url_for(
            db, group.event.id, "staff", staff.id
        )
    async with client.post(
        f"/events/{in_person.event.id}/my-link", headers=json_headers(csrf)
    ) as r:
        assert r.status == 409
        assert (await r.json())["error"]["message"] == "This event has no video conferencing."


async def test_sending_a_link_queues_it_or_says_why_not(
    client: Client, clinic: Clinic, staff: Account
) -> None:
    event_id = await follow_up(clinic, clinic.pat, clinic.quinn)
    csrf = await sign_in(client, staff)
    people = f"/events/{event_id}/people/patient"

    async with client.post(
        f"{people}/{clinic.quinn.id}/send", json={"channel": "sms"}, headers=json_headers(csrf)
    ) as resp:
        assert resp.status == 422
        assert (await resp.json())["error"]["message"] == "Quinn Quiet has no phone number."
    async with client.post(
        f"{people}/{clinic.pat.id}/send", json={"channel": "fax"}, headers=json_headers(csrf)
    ) as resp:
        assert resp.status == 422
    async with client.post(
        f"{people}/{clinic.pat.id}/send", json={"channel": "sms"}, headers=json_headers(csrf)
    ) as resp:
        assert resp.status == 202

    async with client.get(f"/events/{event_id}") as resp:
        page = await resp.text()
    assert re.search(r"<td>Join link</td><td>SMS</td><td>Pat Patient</td>", page)


async def test_the_event_page_shows_each_message_state(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    event_id = await follow_up(clinic, clinic.pat)
    later = to_db_time(utc_now() + timedelta(hours=1))
    # Two messages in the states a broken SMTP server or SMS provider leaves behind;
    # due in an hour, so that the running sender leaves them alone.
    async with app[keys.DATABASE].transaction() as tx:
        waiting = await outbox.enqueue(tx, "join_link", "email", event_id, "patient", clinic.pat.id)
        failed = await outbox.enqueue(tx, "join_link", "sms", event_id, "patient", clinic.pat.id)
        await tx.execute(
            "UPDATE outbox SET attempts = 2, last_error = 'SMTP server unreachable',"
            " next_attempt_at = ? WHERE id = ?",
            (later, waiting),
        )
        await tx.execute(
            "UPDATE outbox SET status = 'failed', attempts = 1,"
            " last_error = 'the number was refused' WHERE id = ?",
            (failed,),
        )
    db = app[keys.DATABASE]

    async def invitation_handled() -> bool:
        row = await db.fetchone("SELECT status FROM outbox WHERE kind = 'invitation'")
        return row is not None and row["status"] != "pending"

    await wait_until(invitation_handled)  # no mail server in these tests: it is saved
    await sign_in(client, staff)
    async with client.get(f"/events/{event_id}") as resp:
        page = await resp.text()
    assert "<td>Waiting to retry (attempt 2): SMTP server unreachable</td>" in page
    assert "<td>Failed: the number was refused</td>" in page
    assert "<td>Invitation</td><td>Email</td><td>Pat Patient</td>" in page
    assert "<td>Not sent: no mail server is configured (saved on the server)</td>" in page


async def test_cancelling_asks_first_then_stops_every_link(
    client: Client, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    event_id = await follow_up(clinic, clinic.pat)
    link = await clinic.scheduler.links.url_for(
        app[keys.DATABASE], event_id, "patient", clinic.pat.id
    )
    assert link is not None
    csrf = await sign_in(client, staff)

    async with client.get(f"/events/{event_id}/cancel") as resp:
        page = await resp.text()
    assert (
        "Cancel Follow-up? Everyone linked will be told, and every join link of this event"
        " will stop working." in page
    )
    assert (await clinic.scheduler.get_event(event_id)).status == "scheduled"

    async with client.post(f"/events/{event_id}/cancel", data={"csrf_token": csrf}) as resp:
        assert resp.url.path == f"/events/{event_id}"
        page = await resp.text()
    assert "This conference was cancelled; the participants are being notified." in page
    assert '<strong class="status-cancelled">Cancelled</strong>' in page
    assert "<td>Cancellation</td><td>Email</td><td>Pat Patient</td>" in page

    async with client.get(link.removeprefix(app[keys.SETTINGS].public_base_url)) as resp:
        assert resp.status == 410
    async with client.get(f"/events/{event_id}/cancel") as resp:
        assert resp.status == 409


@pytest.mark.parametrize("path", ["/", "/events/new", "/events/1", "/events/1/cancel"])
async def test_pages_need_a_signed_in_staff_member(client: Client, path: str) -> None:
    async with client.get(path, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/signin?next=")
