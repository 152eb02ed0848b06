"""The schedule's services: the one door through which pages, the API and the CLI
read and change staff, patients, event types and events.

Scheduler is made of parts that each do one thing: ScheduleRecords reads
(records.py), Directory adds staff, patients and event types (directory.py),
EventRules creates, changes and cancels events (events.py), and LinkHandout hands
out their join links (handout.py). The values and pure rules they work on are
clinicconf.schedule's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from ..accounts import StaffUser
from ..db import Database
from ..links import JoinLinks
from ..notify.outbox import Channel
from ..schedule import (
    Event,
    EventInput,
    EventType,
    EventTypeInput,
    Patient,
    PatientInput,
    PersonKind,
    SavedEvent,
    Staff,
    StaffInput,
)
from .directory import Directory
from .events import EventRules
from .handout import LinkHandout
from .records import ScheduleRecords


class Scheduler:
    def __init__(
        self,
        db: Database,
        links: JoinLinks,
        phone_region: str,
        messages_queued: Callable[[], None] = lambda: None,
        event_changed: Callable[[Event], Awaitable[None]] | None = None,
    ) -> None:
        """messages_queued wakes the outbox sender after a commit that queued
        messages; event_changed tells the live conference of a change or cancellation."""
        self.links = links
        self._records = ScheduleRecords(db)
        self._directory = Directory(db, phone_region)
        self._events = EventRules(db, links, messages_queued, event_changed)
        self._handout = LinkHandout(db, links, messages_queued)

    # --- the directory ---------------------------------------------------------------

    async def create_staff(
        self, user: StaffUser | None, data: StaffInput, password_hash: str | None = None
    ) -> Staff:
        return await self._directory.create_staff(user, data, password_hash)

    async def create_first_admin(
        self, setup_token: str, data: StaffInput, password_hash: str
    ) -> Staff:
        return await self._directory.create_first_admin(setup_token, data, password_hash)

    async def list_staff(self) -> list[Staff]:
        return await self._records.list_staff()

    async def get_staff(self, staff_id: int) -> Staff:
        return await self._records.get_staff(staff_id)

    async def create_patient(self, user: StaffUser, data: PatientInput) -> Patient:
        return await self._directory.create_patient(user, data)

    async def list_patients(self) -> list[Patient]:
        return await self._records.list_patients()

    async def get_patient(self, patient_id: int) -> Patient:
        return await self._records.get_patient(patient_id)

    async def create_event_type(self, user: StaffUser, data: EventTypeInput) -> EventType:
        return await self._directory.create_event_type(user, data)

    async def list_event_types(self) -> list[EventType]:
        return await self._records.list_event_types()

    # --- events ----------------------------------------------------------------------

    async def create_event(self, user: StaffUser, data: EventInput) -> SavedEvent:
        return await self._events.create_event(user, data)

    async def update_event(self, user: StaffUser, event_id: int, data: EventInput) -> SavedEvent:
        return await self._events.update_event(user, event_id, data)

    async def cancel_event(self, user: StaffUser, event_id: int) -> Event:
        return await self._events.cancel_event(user, event_id)

    async def get_event(self, event_id: int) -> Event:
        return await self._records.get_event(event_id)

    async def events_between(self, start: datetime, end: datetime) -> list[Event]:
        return await self._records.events_between(start, end)

    # --- join links ------------------------------------------------------------------

    async def person_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int
    ) -> str:
        return await self._handout.person_link(user, event_id, kind, person_id)

    async def my_link(self, user: StaffUser, event_id: int) -> str:
        return await self._handout.my_link(user, event_id)

    async def public_link(self, user: StaffUser, event_id: int) -> str:
        return await self._handout.public_link(user, event_id)

    async def send_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int, channel: Channel
    ) -> None:
        await self._handout.send_link(user, event_id, kind, person_id, channel)

    async def all_links(self, user: StaffUser, event_id: int) -> dict[str, object]:
        return await self._handout.all_links(user, event_id)
