"""The server-rendered pages: signing in, first-run setup, the directories and the
join link landing pages, driven through the real application like a browser would."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import accounts, audit, keys
from clinicconf.accounts import StaffUser
from clinicconf.config import Settings
from clinicconf.errors import PermissionDenied
from clinicconf.schedule import EventInput

from ..support.accounts import ADMIN_PASSWORD, Account, make_account
from ..support.pages import Conference, Page, get, schedule, sign_in, submit
from ..support.servers import LOOPBACK_ICE

Client = TestClient[web.Request, web.Application]

# The clinic is not in UTC here, so that the pages' times show the conversion.
CLINIC_ZONE = "America/Chicago"
PUBLIC_WITHOUT_VIDEO = "Public Conference can only be enabled when Video Conferencing is enabled."


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        time_zone=CLINIC_ZONE,
        ice_addresses=LOOPBACK_ICE,
    )


def value_of(page: Page, field: str) -> str:
    match = re.search(rf'name="{field}" type="[a-z]+"\s+value="([^"]*)"', page.text)
    assert match, f"no {field} field"
    return html.unescape(match.group(1))


# --- signing in ------------------------------------------------------------------------


async def test_sign_in_shows_the_pages_and_sign_out_ends_the_session(
    client: Client, admin: Account
) -> None:
    assert (await get(client, "/patients")).location == "/signin?next=/patients"

    await sign_in(client, admin)
    patients = await get(client, "/patients")
    assert patients.status == 200
    assert "Ada Admin" in patients.text
    assert (await get(client, "/signin")).location == "/"

    signed_out = await submit(client, "/patients", {}, action="/signout")
    assert (signed_out.status, signed_out.location) == (303, "/signin")
    assert (await get(client, "/patients")).location == "/signin?next=/patients"


async def test_wrong_password_is_refused_and_keeps_the_email(
    client: Client, admin: Account
) -> None:
    page = await submit(client, "/signin", {"email": admin.email, "password": "not it at all"})
    assert page.status == 400
    assert "Email or password is incorrect." in page.text
    assert value_of(page, "email") == admin.email
    assert (await get(client, "/patients")).status == 303


async def test_sign_in_goes_back_only_to_a_page_of_this_site(
    client: Client, admin: Account
) -> None:
    where_to = {
        "/patients?added=1": "/patients?added=1",
        "//evil.example/signin": "/",
        "https://evil.example/": "/",
        "/\\evil.example": "/",
        "/\t/evil.example": "/",
        "": "/",
    }
    for next_path, expected in where_to.items():
        client.session.cookie_jar.clear()  # a fresh browser, signed out
        page = await submit(
            client,
            "/signin",
            {"email": admin.email, "password": admin.password, "next": next_path},
        )
        assert (page.status, page.location) == (303, expected), next_path


async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    for token in ({}, {"csrf_token": "forged"}):
        data = {"name": "Pat Example", "record_number": "R-1", **token}
        async with client.post("/patients", data=data, allow_redirects=False) as resp:
            assert resp.status == 403
            assert "This form has expired" in await resp.text()
    assert await app[keys.SCHEDULER].list_patients() == []


# --- first-run setup -------------------------------------------------------------------


async def test_setup_link_creates_the_first_administrator_once(
    client: Client, app: web.Application
) -> None:
    db = app[keys.DATABASE]
    token = await accounts.create_setup_token(db)
    assert token is not None
    assert (await get(client, "/setup/" + "x" * len(token))).status == 404
    assert (await get(client, f"/setup/{token}")).status == 200

    form = {"name": "Ada Admin", "email": "ada@clinic.test", "phone": ""}
    short = await submit(
        client, f"/setup/{token}", {**form, "password": "short", "password_repeat": "short"}
    )
    assert short.status == 422
    assert f"Use at least {accounts.MIN_PASSWORD_LENGTH} characters." in short.text
    assert value_of(short, "name") == "Ada Admin"
    assert await accounts.staff_count(db) == 0

    done = await submit(
        client,
        f"/setup/{token}",
        {**form, "password": ADMIN_PASSWORD, "password_repeat": ADMIN_PASSWORD},
    )
    assert (done.status, done.location) == (303, "/")
    staff_page = await get(client, "/staff")
    assert staff_page.status == 200 and "New staff member" in staff_page.text

    again = await get(client, f"/setup/{token}")
    assert again.status == 410
    assert "Setup is already done" in again.text
    assert await accounts.staff_count(db) == 1


async def test_setup_link_does_nothing_once_a_staff_account_exists(
    client: Client, app: web.Application
) -> None:
    db = app[keys.DATABASE]
    token = await accounts.create_setup_token(db)
    assert token is not None
    await make_account(app, "Sam Staff", "sam@clinic.test", "staple battery horse", admin=False)

    assert (await get(client, f"/setup/{token}")).status == 410
    password = "x" * 20
    form = {"name": "Mallory", "email": "m@evil.example", "password": password}
    # The setup page shows no form now; a hand-made post with a valid CSRF token.
    posted = await submit(
        client, "/signin", {**form, "password_repeat": password}, action=f"/setup/{token}"
    )
    assert posted.status == 410
    assert [s.name for s in await app[keys.SCHEDULER].list_staff()] == ["Sam Staff"]


# --- directories -----------------------------------------------------------------------


async def test_staff_members_cannot_add_staff_or_event_types(
    client: Client, app: web.Application, staff: Account
) -> None:
    await sign_in(client, staff)
    staff_page = await get(client, "/staff")
    assert staff_page.status == 200 and "Sam Staff" in staff_page.text
    assert "New staff member" not in staff_page.text
    assert "Schedule Event Type Input" not in (await get(client, "/event-types")).text

    new_staff = {"name": "Eve", "email": "eve@clinic.test", "is_admin": "on"}
    assert (await submit(client, "/staff", new_staff)).status == 403
    new_type = {"name": "Telehealth", "colour": "#112233", "video_conferencing": "on"}
    assert (await submit(client, "/event-types", new_type)).status == 403

    scheduler = app[keys.SCHEDULER]
    assert [s.name for s in await scheduler.list_staff()] == ["Sam Staff"]
    assert await scheduler.list_event_types() == []


async def test_admin_adds_staff_with_or_without_a_password(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    with_password = {"name": "Nia Nurse", "email": "nia@clinic.test", "phone": "(202) 555-0144"}
    added = await submit(client, "/staff", {**with_password, "password": "a long password"})
    assert added.status == 303 and added.location is not None
    listed = await get(client, added.location)
    assert "Nia Nurse was added to the staff." in listed.text
    assert "+12025550144" in listed.text

    without = await submit(client, "/staff", {"name": "Otto Locum", "email": "otto@clinic.test"})
    assert without.status == 303
    assert "cannot sign in yet" in (await get(client, "/staff")).text

    db = app[keys.DATABASE]
    assert await accounts.authenticate(db, "nia@clinic.test", "a long password") is not None
    assert await accounts.authenticate(db, "otto@clinic.test", "") is None

    duplicate = await submit(client, "/staff", {"name": "Nia Again", "email": "nia@clinic.test"})
    assert duplicate.status == 409
    assert "A staff member with this email exists already." in duplicate.text
    assert value_of(duplicate, "name") == "Nia Again"


async def test_event_type_form_refuses_public_conference_without_video(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    form = {"name": "Open evening", "colour": "#2e8b57", "public_conference": "on"}
    refused = await submit(client, "/event-types", form)
    assert refused.status == 422
    assert PUBLIC_WITHOUT_VIDEO in refused.text
    assert value_of(refused, "name") == "Open evening"
    assert value_of(refused, "colour") == "#2e8b57"
    assert re.search(r'name="public_conference" type="checkbox" value="on"\s*checked', refused.text)
    assert await app[keys.SCHEDULER].list_event_types() == []

    saved = await submit(client, "/event-types", {**form, "video_conferencing": "on"})
    assert saved.status == 303 and saved.location is not None
    assert "The event type Open evening was added." in (await get(client, saved.location)).text


async def test_patient_form_shows_a_bad_phone_number_beside_the_input_kept(
    client: Client, app: web.Application, staff: Account
) -> None:
    await sign_in(client, staff)
    form = {"name": "Pat Example", "record_number": "R-100", "email": "", "phone": "12"}
    refused = await submit(client, "/patients", form)
    assert refused.status == 422
    assert '<p class="field-error" id="phone-error">This is not a valid phone number.</p>' in (
        refused.text
    )
    assert value_of(refused, "name") == "Pat Example"
    assert value_of(refused, "record_number") == "R-100"
    assert value_of(refused, "phone") == "12"
    assert await app[keys.SCHEDULER].list_patients() == []


async def test_a_patient_name_is_shown_as_text_never_as_markup(
    client: Client, staff: Account
) -> None:
    await sign_in(client, staff)
    saved = await submit(
        client, "/patients", {"name": "<script>alert(1)</script>", "record_number": "R-7"}
    )
    assert saved.status == 303 and saved.location is not None
    listed = (await get(client, saved.location)).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed
    assert "<script>alert(1)" not in listed


# --- join links ------------------------------------------------------------------------


async def test_patient_link_names_the_patient_and_hides_the_other_patient(
    client: Client, conference: Conference
) -> None:
    page = await get(client, conference.patient_path)
    assert page.status == 200
    assert "Group session" in page.text
    assert "You are joining as <strong>Pat One</strong>" in page.text
    assert "Ada Admin" in page.text and "Sam Staff" in page.text
    assert "Quinn Two" not in page.text


async def test_staff_link_shows_everyone_invited(client: Client, conference: Conference) -> None:
    page = await get(client, conference.staff_path)
    assert page.status == 200
    assert "You are joining as <strong>Sam Staff</strong>" in page.text
    assert "Pat One" in page.text and "Quinn Two" in page.text


async def test_public_link_hides_patient_names_and_asks_for_a_display_name(
    client: Client, conference: Conference
) -> None:
    page = await get(client, conference.public_path)
    assert page.status == 200
    assert "Ada Admin" in page.text and "Sam Staff" in page.text
    assert page.text.count("<li>Patient</li>") == 2
    assert "Pat One" not in page.text and "Quinn Two" not in page.text
    assert "You are joining as" not in page.text

    named = await submit(client, conference.public_path, {"display_name": " <b>Guest</b> "})
    assert named.status == 200
    assert "You will join as <strong>&lt;b&gt;Guest&lt;/b&gt;</strong>" in named.text
    disguised = await submit(client, conference.public_path, {"display_name": "\u202enimdA adA"})
    assert "You will join as <strong>nimdA adA</strong>" in disguised.text

    # Blank, too long, or only characters that draw nothing (zero-width, a filler letter).
    for bad in ("   ", "x" * 61, "\u200b\u2060", "\u3164"):
        refused = await submit(client, conference.public_path, {"display_name": bad})
        assert refused.status == 422
        assert "You will join as" not in refused.text


async def test_a_link_opens_only_its_own_kind_of_page(
    client: Client, conference: Conference
) -> None:
    public_token = conference.public_path.removeprefix("/p/")
    personal_token = conference.patient_path.removeprefix("/j/")
    for path in (f"/j/{public_token}", f"/p/{personal_token}", "/j/not-a-token"):
        page = await get(client, path)
        assert page.status == 404
        assert "This link is not valid" in page.text


async def test_people_taken_off_the_event_lose_their_link_but_own_links_stay(
    client: Client, app: web.Application, admin: Account, staff: Account, conference: Conference
) -> None:
    scheduler = app[keys.SCHEDULER]
    event = await scheduler.get_event(conference.event_id)

    async def keep_only(patient_ids: list[int]) -> None:
        await scheduler.update_event(
            conference.admin,
            event.id,
            EventInput(event.title, event.event_type.id, event.start, event.end, [admin.id],
                       patient_ids),
        )  # fmt: skip

    await keep_only([conference.patient_id])  # Sam and Quinn are taken off
    for path in (conference.staff_path, conference.other_patient_path):
        assert (await get(client, path)).status == 404

    # Sam, no longer on the event, may not take a link of his own: it would make him
    # a host, who sees and hears the patients.
    sam = StaffUser(staff.id, "Sam Staff", staff.email, False)
    with pytest.raises(PermissionDenied):
        await scheduler.my_link(sam, event.id)
    await keep_only([])
    assert (await get(client, conference.patient_path)).status == 404
    assert (await get(client, conference.public_path)).status == 200


async def test_links_of_a_cancelled_conference_say_so(
    client: Client, app: web.Application, conference: Conference
) -> None:
    await app[keys.SCHEDULER].cancel_event(conference.admin, conference.event_id)
    for path in (conference.patient_path, conference.public_path):
        page = await get(client, path)
        assert page.status == 410
        assert "This conference was cancelled" in page.text


async def test_a_link_says_when_it_opens_and_when_the_conference_has_ended(
    client: Client, app: web.Application, admin: Account, staff: Account
) -> None:
    early = await schedule(app, admin, staff, timedelta(hours=3))
    page = await get(client, early.patient_path)
    assert page.status == 403
    event = await app[keys.SCHEDULER].get_event(early.event_id)
    opens_at = event.window(app[keys.SETTINGS].join_window_minutes).opens_at
    clinic_time = opens_at.astimezone(app[keys.SETTINGS].zone).strftime("%a %d %b %Y, %H:%M")
    assert f"You can use this link from <strong>{clinic_time}</strong> ({CLINIC_ZONE})" in (
        page.text
    )

    await app[keys.DATABASE].execute(
        "UPDATE events SET start_at = '2020-01-01T09:00:00Z', end_at = '2020-01-01T10:00:00Z'"
    )
    ended = await get(client, early.patient_path)
    assert ended.status == 410
    assert "This conference has ended" in ended.text


async def test_every_opening_is_in_the_audit_log_without_the_token(
    client: Client, app: web.Application, conference: Conference
) -> None:
    await get(client, conference.patient_path)
    await get(client, conference.public_path)
    opened = [
        (r["actor_kind"], r["actor_id"], r["event_id"], r["subject_kind"], r["subject_id"])
        for r in await audit.entries(app[keys.DATABASE], event_id=conference.event_id)
        if r["action"] == "link_opened"
    ]
    assert opened == [
        ("patient", conference.patient_id, conference.event_id, "patient", conference.patient_id),
        ("guest", None, conference.event_id, None, None),
    ]
    everything = str([tuple(r) for r in await audit.entries(app[keys.DATABASE])])
    for path in (conference.patient_path, conference.public_path):
        assert path.split("/")[-1] not in everything
