"""Who may change an event (issue 13): only the event's staff and the administrators
change an event or hand out its links; an event that has ended keeps whom it links."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import keys
from clinicconf.scheduling import NOT_ON_EVENT, Event

from .clinic import CLINIC_ZONE, Clinic, build_clinic, sign_in
from .conftest import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from .test_api import call
from .test_event_pages import event_form, json_headers
from .test_event_pages import settings as settings
from .test_recordings_pages import text

Client = TestClient[web.Request, web.Application]
ENDED: str = "This event has ended: whom it links can no longer change."


@pytest.fixture
async def clinic(app: web.Application, staff: Account) -> Clinic:
    return await build_clinic(app, staff)


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
