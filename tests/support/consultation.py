"""A video consultation to send messages about (two staff members, two patients,
tomorrow), and waiting for the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.app import create_app
from clinicconf.config import Settings
from clinicconf.db import Row, to_db_time, utc_now
from clinicconf.schedule import (
    Event,
    EventInput,
    EventTypeInput,
    PatientInput,
    StaffInput,
)
from clinicconf.scheduling import Scheduler

from .servers import AiohttpClient, wait_until


@dataclass
class Consultation:
    app: web.Application
    user: StaffUser  # the administrator who scheduled it
    event: Event

    @property
    def scheduler(self) -> Scheduler:
        return self.app[keys.SCHEDULER]

    async def link(self, email: str) -> str:
        """The join link of the participant with this email address."""
        for person in self.event.staff:
            if person.email == email:
                return await self.scheduler.person_link(
                    self.user, self.event.id, "staff", person.id
                )
        patient = next(p for p in self.event.patients if p.email == email)
        return await self.scheduler.person_link(self.user, self.event.id, "patient", patient.id)


async def open_clinic(aiohttp_client: AiohttpClient, settings: Settings) -> web.Application:
    """The real application from the real factory, started."""
    client = await aiohttp_client(create_app(settings))
    return client.app


async def schedule_consultation(app: web.Application, *, video: bool = True) -> Consultation:
    scheduler = app[keys.SCHEDULER]
    admin = await scheduler.create_staff(
        None, StaffInput("Ada Admin", "ada@clinic.test", "+12025550123", is_admin=True)
    )
    user = StaffUser(admin.id, admin.name, admin.email, True)
    colleague = await scheduler.create_staff(user, StaffInput("Sam Staff", "sam@clinic.test"))
    patients = [
        await scheduler.create_patient(
            user, PatientInput("Pat Patel", "MRN-1", "pat@example.test", "+14155550123")
        ),
        await scheduler.create_patient(
            user, PatientInput("Robin Roe", "MRN-2", "robin@example.test", "+16175550123")
        ),
    ]
    event_type = await scheduler.create_event_type(
        user, EventTypeInput("Telehealth" if video else "In person", video, False)
    )
    start = (utc_now() + timedelta(days=1)).replace(minute=0, second=0)
    saved = await scheduler.create_event(
        user,
        EventInput(
            "Follow-up consultation",
            event_type.id,
            start,
            start + timedelta(minutes=30),
            [admin.id, colleague.id],
            [p.id for p in patients],
        ),
    )
    return Consultation(app, user, saved.event)


async def outbox_rows(app: web.Application) -> list[Row]:
    return await app[keys.DATABASE].fetchall("SELECT * FROM outbox ORDER BY id")


async def wait_for_outbox(app: web.Application, done: Callable[[Row], bool]) -> list[Row]:
    """The outbox once every message in it is `done`."""

    async def all_done() -> bool:
        rows = await outbox_rows(app)
        return bool(rows) and all(done(row) for row in rows)

    await wait_until(all_done)
    return await outbox_rows(app)


def tried_and_failed(row: Row) -> bool:
    return row["attempts"] >= 1 and row["last_error"] is not None


async def make_retries_due(app: web.Application) -> None:
    """Skip the backoff: what is waiting for a retry is due now, and the sender told so."""
    await app[keys.DATABASE].execute(
        "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending'", (to_db_time(utc_now()),)
    )
    app[keys.OUTBOX_SENDER].wake()
