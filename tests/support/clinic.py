"""A small clinic for the event page tests (through aiohttp and through Chromium):
people, event types, signing in with the real form, the event form filled in, and
reading a page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.schedule import (
    EventInput,
    EventType,
    EventTypeInput,
    Patient,
    PatientInput,
    SavedEvent,
    StaffInput,
)
from clinicconf.scheduling import Scheduler
from clinicconf.web.middleware import CSRF_COOKIE

from .accounts import Account
from .servers import Client

# Not UTC, so that a day column or a form value read in the wrong zone shows.
CLINIC_ZONE = "America/New_York"


@dataclass(frozen=True)
class Clinic:
    scheduler: Scheduler
    staff: StaffUser
    telehealth: EventType
    group: EventType  # a Public Conference
    in_person: EventType  # no video
    pat: Patient  # email and phone on file
    quinn: Patient  # neither

    async def event(
        self, title: str, event_type: EventType, start: str, end: str, *, patients: list[Patient]
    ) -> SavedEvent:
        """An event with the signed-in staff member; times are local, "2030-05-06T10:00"."""
        zone = ZoneInfo(CLINIC_ZONE)
        return await self.scheduler.create_event(
            self.staff,
            EventInput(
                title=title,
                event_type_id=event_type.id,
                start=datetime.fromisoformat(start).replace(tzinfo=zone),
                end=datetime.fromisoformat(end).replace(tzinfo=zone),
                staff_ids=[self.staff.id],
                patient_ids=[p.id for p in patients],
            ),
        )


async def build_clinic(app: web.Application, staff: Account) -> Clinic:
    scheduler = app[keys.SCHEDULER]
    # The administrator who set up the event types never signs in here: no password
    # to hash, which keeps each test quick.
    admin = await scheduler.create_staff(
        None, StaffInput("Ada Admin", "ada@clinic.test", is_admin=True)
    )
    admin_user = StaffUser(admin.id, admin.name, admin.email, True)
    staff_member = await scheduler.get_staff(staff.id)
    return Clinic(
        scheduler=scheduler,
        staff=StaffUser(staff_member.id, staff_member.name, staff_member.email, False),
        telehealth=await scheduler.create_event_type(
            admin_user, EventTypeInput("Telehealth", True, False, "#2e7d32")
        ),
        group=await scheduler.create_event_type(
            admin_user, EventTypeInput("Group session", True, True, "#6a1b9a")
        ),
        in_person=await scheduler.create_event_type(
            admin_user, EventTypeInput("In person", False, False)
        ),
        pat=await scheduler.create_patient(
            admin_user, PatientInput("Pat Patient", "MRN-1", "pat@example.test", "+12025550144")
        ),
        quinn=await scheduler.create_patient(admin_user, PatientInput("Quinn Quiet", "MRN-2")),
    )


def csrf_token(client: TestClient[web.Request, web.Application]) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[CSRF_COOKIE].value


async def sign_in(client: TestClient[web.Request, web.Application], account: Account) -> str:
    """Sign in through the form; returns the CSRF token for later forms and fetch calls."""
    async with client.get("/signin") as page:
        assert page.status == 200
    form = {"csrf_token": csrf_token(client), "email": account.email, "password": account.password}
    async with client.post("/signin", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    return csrf_token(client)


async def text(client: Client, path: str, status: int = 200) -> str:
    async with client.get(path, allow_redirects=False) as resp:
        assert resp.status == status, (path, resp.status)
        return await resp.text()


def event_form(csrf: str, clinic: Clinic, **changes: str | list[str]) -> list[tuple[str, str]]:
    """A filled-in event form: a telehealth session with Sam, Pat and Quinn."""
    fields: dict[str, str | list[str]] = {
        "csrf_token": csrf,
        "title": "Follow-up",
        "event_type_id": str(clinic.telehealth.id),
        "start": "2030-05-06T10:00",
        "end": "2030-05-06T10:30",
        "staff_ids": [str(clinic.staff.id)],
        "patient_ids": [str(clinic.pat.id), str(clinic.quinn.id)],
        "record_patient_id": "",
    } | changes
    return [
        (name, item)
        for name, value in fields.items()
        for item in (value if isinstance(value, list) else [value])
    ]


def json_headers(csrf: str) -> dict[str, str]:
    return {"Accept": "application/json", "X-CSRF-Token": csrf}
