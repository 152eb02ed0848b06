"""Who may change an event, and who may reach a recording (issue 13): only the event's
staff and the administrators change an event or hand out its links; an event that
has ended keeps whom it links; a recording may be reached by the staff linked to its
event when it was recorded (and the administrators), whatever the event becomes; and
it is filed only in the records of the patients who were present while it recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.conference.identity import Closing
from clinicconf.db import Database, migration_files, to_db_time, utc_now
from clinicconf.links import JoinLinks
from clinicconf.recording.files import COMPOSED
from clinicconf.recording.store import Attendee, Recordings
from clinicconf.schedule import (
    NOT_ON_EVENT,
    Event,
    EventInput,
    EventTypeInput,
    PatientInput,
    StaffInput,
)
from clinicconf.scheduling import Scheduler
from clinicconf.security import load_or_create_secret_key
from clinicconf.web.protocol import close_code

from ..support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from ..support.api import call
from ..support.clinic import (
    CLINIC_ZONE,
    Clinic,
    event_form,
    json_headers,
    sign_in,
    text,
)
from ..support.lobby import Lobby, Page
from ..support.recordings import Media, compose

Client = TestClient[web.Request, web.Application]
OpenPage = Callable[..., Awaitable[tuple[Page, dict[str, Any]]]]
ENDED: str = "This event has ended: whom it links can no longer change."


@pytest.fixture
async def olive(app: web.Application) -> Account:
    """A staff member on none of the events."""
    return await make_account(app, "Olive Other", "olive@clinic.test", STAFF_PASSWORD, admin=False)


@pytest.fixture
async def alex(app: web.Application) -> Account:
    """An administrator on none of the events (build_clinic's has no password)."""
    return await make_account(app, "Alex Admin", "alex@clinic.test", ADMIN_PASSWORD, admin=True)


def local(moment: datetime) -> str:
    """A time as the event form and Clinic.event take it."""
    return moment.astimezone(ZoneInfo(CLINIC_ZONE)).strftime("%Y-%m-%dT%H:%M")


def staff_ids(event: Event) -> list[int]:
    return [s.id for s in event.staff]


# --- who may change an event ------------------------------------------------------------


async def test_staff_not_on_an_event_can_neither_change_it_nor_hand_out_its_links(
    client: Client, app: web.Application, clinic: Clinic, olive: Account, alex: Account
) -> None:
    # Sam's group session with Pat, a Public Conference: it has a public link too.
    saved = await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[clinic.pat]
    )
    event_id = saved.event.id
    csrf = await sign_in(client, olive)

    # Ticking herself onto the event, or cancelling it, through its pages.
    onto_it = event_form(csrf, clinic, staff_ids=[str(clinic.staff.id), str(olive.id)])
    async with client.post(f"/events/{event_id}/edit", data=onto_it) as resp:
        assert resp.status == 403
    async with client.post(f"/events/{event_id}/cancel", data={"csrf_token": csrf}) as resp:
        assert resp.status == 403
    for path in (f"/events/{event_id}/edit", f"/events/{event_id}/cancel"):
        assert "Only the event&#39;s staff and administrators can do this." in await text(
            client, path, status=403
        )
    page = await text(client, f"/events/{event_id}")
    assert "Only the event's staff and administrators can change this event" in page
    assert f'href="/events/{event_id}/edit"' not in page
    assert 'id="public-link-button"' not in page
    # Nor does she get the patient's link or the public link, or send one.
    person = f"/events/{event_id}/people/patient/{clinic.pat.id}"
    for path, body in [
        (f"{person}/link", None),
        (f"{person}/send", {"channel": "email"}),
        (f"/events/{event_id}/public-link", None),
        (f"/events/{event_id}/my-link", None),  # a host's link of her own
    ]:
        async with client.post(path, json=body, headers=json_headers(csrf)) as resp:
            assert resp.status == 403, path
            assert (await resp.json())["error"]["message"] == NOT_ON_EVENT
    # Nor through the API.
    for method, template, body in [
        ("GET", "/events/{event_id}/links", None),
        ("POST", "/events/{event_id}/cancel", None),
        ("POST", "/events/{event_id}/participants/{kind}/{person_id}/send", {"channel": "email"}),
    ]:
        answer = await call(
            client,
            olive,
            method,
            template,
            body,
            expect=403,
            event_id=event_id,
            kind="patients",
            person_id=clinic.pat.id,
        )
        assert answer["error"] == {"code": "forbidden", "message": NOT_ON_EVENT, "field": None}

    event = await clinic.scheduler.get_event(event_id)
    assert (staff_ids(event), event.status) == ([clinic.staff.id], "scheduled")
    rows = await app[keys.DATABASE].fetchall(
        "SELECT kind FROM outbox WHERE event_id = ? AND kind != 'invitation'", (event_id,)
    )
    assert rows == []

    # An administrator who is not on it may.
    links = await call(client, alex, "GET", "/events/{event_id}/links", event_id=event_id)
    assert [p["id"] for p in links["patients"]] == [clinic.pat.id]
    client.session.cookie_jar.clear()
    csrf = await sign_in(client, alex)
    await text(client, f"/events/{event_id}/edit")
    changed = event_form(
        csrf,
        clinic,
        event_type_id=str(clinic.group.id),
        staff_ids=[str(clinic.staff.id), str(olive.id)],
        patient_ids=[str(clinic.pat.id)],
    )
    async with client.post(f"/events/{event_id}/edit", data=changed, allow_redirects=False) as r:
        assert r.status == 303
    assert set(staff_ids(await clinic.scheduler.get_event(event_id))) == {clinic.staff.id, olive.id}


async def test_an_event_that_has_ended_keeps_whom_it_links(
    client: Client, clinic: Clinic, staff: Account, olive: Account
) -> None:
    start = datetime.now(ZoneInfo(CLINIC_ZONE)) - timedelta(hours=2)
    saved = await clinic.event(
        "Follow-up", clinic.telehealth, local(start), local(start + timedelta(minutes=30)),
        patients=[clinic.pat],
    )  # fmt: skip
    event_id = saved.event.id
    csrf = await sign_in(client, staff)
    same = {"start": local(start), "end": local(start + timedelta(minutes=30))}

    for field_name, changed in [
        ("patient_ids", {"patient_ids": [str(clinic.pat.id), str(clinic.quinn.id)]}),
        ("patient_ids", {"patient_ids": []}),
        ("staff_ids", {"staff_ids": [str(clinic.staff.id), str(olive.id)]}),
    ]:
        form = event_form(csrf, clinic, **(same | changed))
        async with client.post(f"/events/{event_id}/edit", data=form) as resp:
            assert resp.status == 422
            page = await resp.text()
        assert f'<p class="field-error" id="{field_name}-error">{ENDED}</p>' in page
    event = await clinic.scheduler.get_event(event_id)
    assert ([p.id for p in event.patients], staff_ids(event)) == ([clinic.pat.id], [staff.id])
    assert "This event has ended" in await text(client, f"/events/{event_id}/edit")

    # Moved to tomorrow with the same people, it takes place again.
    tomorrow = start + timedelta(days=1)
    moved = event_form(
        csrf, clinic, start=local(tomorrow), end=local(tomorrow + timedelta(minutes=30)),
        patient_ids=[str(clinic.pat.id)],
    )  # fmt: skip
    async with client.post(f"/events/{event_id}/edit", data=moved, allow_redirects=False) as r:
        assert r.status == 303
    event = await clinic.scheduler.get_event(event_id)
    assert event.start == tomorrow.replace(second=0, microsecond=0)
    assert [p.id for p in event.patients] == [clinic.pat.id]


# --- who may reach a recording -----------------------------------------------------------


async def recorded(app: web.Application, event_id: int, present: list[Attendee]) -> int:
    """A recording of the event as the conference makes one: begun, then its
    participants noted present as they come into its media."""
    store = app[keys.RECORDINGS]
    recording_id = await store.create(await app[keys.SCHEDULER].get_event(event_id))
    await store.note_present(recording_id, present)
    return recording_id


async def test_a_recordings_access_stays_as_it_was_when_recorded(
    client: Client,
    app: web.Application,
    clinic: Clinic,
    staff: Account,
    olive: Account,
    alex: Account,
    media: Media,
) -> None:
    saved = await clinic.event(
        "Follow-up", clinic.telehealth, "2030-05-06T10:00", "2030-05-06T10:30",
        patients=[clinic.pat],
    )  # fmt: skip
    event = saved.event
    present = [Attendee("9e7c0002", "Pat Patient", "patient", clinic.pat.id)]
    recording_id = await recorded(app, event.id, present)
    await compose(app, media, recording_id)
    # Afterwards Olive is put on the event, and Sam taken off it.
    await clinic.scheduler.update_event(
        StaffUser(alex.id, "Alex Admin", alex.email, True),
        event.id,
        EventInput(
            event.title, event.event_type.id, event.start, event.end, [olive.id], [clinic.pat.id]
        ),
    )

    await sign_in(client, olive)
    nothing = await text(client, "/recordings/999", status=404)
    for path in (f"/recordings/{recording_id}", f"/recordings/{recording_id}/files/{COMPOSED}"):
        assert await text(client, path, status=404) == nothing
    for page in (f"/patients/{clinic.pat.id}", f"/events/{event.id}"):
        assert "1 recording is not shown to you" in await text(client, page)
    answer = await call(
        client, olive, "GET", "/recordings/{recording_id}", expect=404, recording_id=recording_id
    )
    assert answer["error"]["message"] == "No such recording."

    client.session.cookie_jar.clear()
    await sign_in(client, staff)
    assert "Recording of Follow-up" in await text(client, f"/recordings/{recording_id}")
    async with client.get(f"/recordings/{recording_id}/files/{COMPOSED}") as resp:
        assert resp.status == 200
    listed = await call(
        client, staff, "GET", "/patients/{patient_id}/recordings", patient_id=clinic.pat.id
    )
    assert ([r["id"] for r in listed["recordings"]], listed["not_shown"]) == ([recording_id], 0)


# --- whose records hold a recording -----------------------------------------------------


async def test_a_group_sessions_recording_is_filed_only_for_the_patients_present(
    client: Client, app: web.Application, lobby: Lobby, open_page: OpenPage, staff: Account
) -> None:
    """Ada hosts a recorded group session with Pat and Quinn linked: Pat comes in, Quinn
    never does."""
    pat, quinn = (await app[keys.SCHEDULER].get_event(lobby.event_id)).patients
    host, _ = await open_page(lobby.host_path)
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    for page in (host, (await open_page(lobby.pat_path))[0]):
        assert (await page.request("join_media"))["type"] == "result"
    await host.send("end")
    assert await host.closed() == close_code(Closing.ENDED)
    (recording,) = await app[keys.RECORDINGS].for_event(lobby.event_id)

    await sign_in(client, staff)
    assert "No recordings." in await text(client, f"/patients/{quinn.id}")
    assert f'href="/recordings/{recording.id}?' in await text(client, f"/patients/{pat.id}")
    event_page = await text(client, f"/events/{lobby.event_id}")
    assert ": filed in the records of Pat Patel</li>" in event_page
    assert "A patient linked to the event who was not present does not have it" in event_page
    shown = await text(client, f"/recordings/{recording.id}")
    filed = shown[shown.index("<dt>Filed in the records of</dt>") : shown.index("<dt>Started</dt>")]
    assert f'<a href="/patients/{pat.id}">Pat Patel</a>' in filed and "Quinn" not in filed
    for patient, expected in ((pat, [recording.id]), (quinn, [])):
        listed = await call(
            client, staff, "GET", "/patients/{patient_id}/recordings", patient_id=patient.id
        )
        assert [r["id"] for r in listed["recordings"]] == expected
        assert listed["not_shown"] == 0
    detail = await call(
        client, staff, "GET", "/recordings/{recording_id}", recording_id=recording.id
    )
    assert detail["patient_ids"] == [pat.id]


async def test_recordings_made_before_keep_their_events_staff(tmp_path: Path) -> None:
    """A database with a recording from before migration 0006: its event's staff then
    are the ones who reach it from now on."""
    before = tmp_path / "before"
    before.mkdir()
    for path in migration_files():
        if path.name < "0006":
            (before / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        await db.migrate(before)
        links = JoinLinks(load_or_create_secret_key(tmp_path / "secret.key"), "http://clinic.test")
        scheduler = Scheduler(db, links, "US")
        ada = await scheduler.create_staff(
            None, StaffInput("Ada Admin", "ada@clinic.test", is_admin=True)
        )
        sam = await scheduler.create_staff(None, StaffInput("Sam Staff", "sam@clinic.test"))
        olive = await scheduler.create_staff(None, StaffInput("Olive Other", "olive@clinic.test"))
        sam_user = StaffUser(sam.id, sam.name, sam.email, False)
        video = await scheduler.create_event_type(
            StaffUser(ada.id, ada.name, ada.email, True), EventTypeInput("Telehealth", True, False)
        )
        pat = await scheduler.create_patient(sam_user, PatientInput("Pat Patient", "MRN-1"))
        start = utc_now() - timedelta(days=1)
        saved = await scheduler.create_event(
            sam_user,
            EventInput(
                "Follow-up", video.id, start, start + timedelta(hours=1), [sam.id], [pat.id]
            ),
        )
        recording_id = await db.execute(
            "INSERT INTO recordings (event_id, started_at) VALUES (?, ?)",
            (saved.event.id, to_db_time(start)),
        )
        await db.migrate()
        recording = await Recordings(db, tmp_path / "recordings").get(recording_id)
    finally:
        await db.close()
    assert recording.reachable_by(sam_user)
    assert not recording.reachable_by(StaffUser(olive.id, olive.name, olive.email, False))


async def test_an_administrators_own_link_opens_only_while_she_is_one(
    client: Client, app: web.Application, clinic: Clinic, alex: Account
) -> None:
    """A staff link makes its holder a host. Alex, an administrator not on the event,
    takes a link of her own; once she is no longer an administrator it opens nothing."""
    now = utc_now()
    saved = await clinic.event(
        "Group",
        clinic.group,
        local(now - timedelta(minutes=5)),
        local(now + timedelta(hours=1)),
        patients=[clinic.pat],
    )
    alex_user = StaffUser(alex.id, "Alex Admin", alex.email, True)
    own_path = URL(await clinic.scheduler.my_link(alex_user, saved.event.id)).path
    assert "You are joining as <strong>Alex Admin</strong>" in await text(client, own_path)
    await app[keys.DATABASE].execute("UPDATE staff SET is_admin = 0 WHERE id = ?", (alex.id,))
    assert "Alex Admin" not in await text(client, own_path, status=404)
