"""The server-rendered pages driven through aiohttp as a browser would: getting a page,
submitting its form with the CSRF token, signing in; and a Public Conference's link
paths to open."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from yarl import URL

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.db import utc_now
from clinicconf.links import LinkKind
from clinicconf.schedule import EventInput, EventTypeInput, PatientInput

from .accounts import Account
from .servers import Client

_CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


@dataclass
class Page:
    status: int
    text: str
    location: str | None


async def get(client: Client, path: str) -> Page:
    async with client.get(path, allow_redirects=False) as resp:
        return Page(resp.status, await resp.text(), resp.headers.get("Location"))


async def submit(
    client: Client, page: str, data: dict[str, str], action: str | None = None
) -> Page:
    """Open `page`, then post `data` with the form's CSRF token to `action` (the page
    itself by default), as a browser submitting the page's form would."""
    match = _CSRF_FIELD.search((await get(client, page)).text)
    assert match, f"no form on {page}"
    async with client.post(
        action or page, data={"csrf_token": match.group(1), **data}, allow_redirects=False
    ) as resp:
        return Page(resp.status, await resp.text(), resp.headers.get("Location"))


async def sign_in(client: Client, account: Account) -> None:
    page = await submit(client, "/signin", {"email": account.email, "password": account.password})
    assert page.status == 303, page.text


@dataclass
class Conference:
    event_id: int
    admin: StaffUser
    staff_path: str
    patient_path: str
    other_patient_path: str
    public_path: str
    patient_id: int


async def schedule(
    app: web.Application, admin: Account, staff: Account, start_in: timedelta
) -> Conference:
    """A Public Conference with the admin, a staff member and two patients, starting
    `start_in` from now and lasting an hour."""
    scheduler = app[keys.SCHEDULER]
    db = app[keys.DATABASE]
    user = StaffUser(admin.id, "Ada Admin", admin.email, True)
    event_type = await scheduler.create_event_type(user, EventTypeInput("Open clinic", True, True))
    pat = await scheduler.create_patient(user, PatientInput("Pat One", "R-1"))
    quinn = await scheduler.create_patient(user, PatientInput("Quinn Two", "R-2"))
    start = utc_now() + start_in
    saved = await scheduler.create_event(
        user,
        EventInput(
            "Group session",
            event_type.id,
            start,
            start + timedelta(hours=1),
            [admin.id, staff.id],
            [pat.id, quinn.id],
        ),
    )
    event_id = saved.event.id

    async def path(kind: LinkKind, person_id: int | None) -> str:
        url = await scheduler.links.url_for(db, event_id, kind, person_id)
        assert url is not None
        return URL(url).path

    return Conference(
        event_id,
        user,
        await path("staff", staff.id),
        await path("patient", pat.id),
        await path("patient", quinn.id),
        await path("public", None),
        pat.id,
    )
