"""Staff, patients, event types and events: the rules, and the one door through
which pages, the API and the CLI change them.

Any staff member may create an event; only its linked staff and the administrators
may change or cancel it, copy, send or list its join links, or get a link of their
own to it (may_change). Once it has ended, whom it links stays as it was."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal

import phonenumbers

from . import audit, names
from .accounts import StaffUser, setup_token_valid
from .db import Database, Row, Transaction, from_db_time, to_db_time, utc_now
from .errors import Conflict, NotFound, PermissionDenied, ValidationError
from .links import JoinLinks, LinkKind, LinkWindow, link_window
from .notify import outbox
from .notify.outbox import Channel, MessageKind

PersonKind = Literal["staff", "patient"]

MAX_NAME: Final = 200
MAX_EVENT_LENGTH: Final = timedelta(hours=24)
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COLOUR: Final = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Staff:
    id: int
    name: str
    email: str
    phone: str | None
    is_admin: bool


@dataclass(frozen=True)
class Patient:
    id: int
    name: str
    email: str | None
    phone: str | None
    record_number: str


@dataclass(frozen=True)
class EventType:
    id: int
    name: str
    colour: str
    video_conferencing: bool
    public_conference: bool


@dataclass(frozen=True)
class Event:
    id: int
    title: str
    event_type: EventType
    start: datetime
    end: datetime
    status: Literal["scheduled", "cancelled"]
    record_patient_id: int | None
    sequence: int
    staff: list[Staff] = field(default_factory=list)
    patients: list[Patient] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def window(self, window_minutes: int) -> LinkWindow:
        return link_window(self.start, self.end, window_minutes)

    def person(self, kind: PersonKind, person_id: int) -> Staff | Patient | None:
        people: Sequence[Staff | Patient] = self.staff if kind == "staff" else self.patients
        return next((p for p in people if p.id == person_id), None)


@dataclass(frozen=True)
class StaffInput:
    name: str
    email: str
    phone: str | None = None
    is_admin: bool = False


@dataclass(frozen=True)
class PatientInput:
    name: str
    record_number: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class EventTypeInput:
    name: str
    video_conferencing: bool
    public_conference: bool
    colour: str = "#3a7bd5"


@dataclass(frozen=True)
class EventInput:
    title: str
    event_type_id: int
    start: datetime
    end: datetime
    staff_ids: list[int]
    patient_ids: list[int]
    record_patient_id: int | None = None


@dataclass(frozen=True)
class SavedEvent:
    event: Event
    # Who the invitation emails go to, and who could not get one (no email address).
    emailed: list[str]
    not_emailed: list[str]


# --- validation, shared by the pages and the API --------------------------------------


def clean_name(value: str, field_name: str = "name") -> str:
    value = names.clean(value)
    if not value:
        raise ValidationError("This field is required.", field_name)
    if len(value) > MAX_NAME:
        raise ValidationError(f"At most {MAX_NAME} characters.", field_name)
    return value


def clean_email(value: str | None, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise ValidationError("An email address is required.", "email")
        return None
    # An address is shown to staff and written into messages: nothing in it may hide
    # or turn text around (names.py's rule; a real address loses nothing to it).
    if len(value) > 254 or not _EMAIL.match(value) or names.clean(value) != value:
        raise ValidationError("This is not a valid email address.", "email")
    return value


def clean_phone(value: str | None, region: str) -> str | None:
    """A phone number in E.164 (+15551234567), or None when left empty."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError("This is not a valid phone number.", "phone") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("This is not a valid phone number.", "phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _require_admin(user: StaffUser) -> None:
    if not user.is_admin:
        raise PermissionDenied("Only an administrator can do this.")


NOT_ON_EVENT: Final = "Only the event's staff and administrators can do this."


def may_change(user: StaffUser, event: Event) -> bool:
    """Whether `user` may change `event` (edit, cancel) and hand out or send its join
    links: its linked staff and the administrators. Anyone may create an event."""
    return user.is_admin or event.person("staff", user.id) is not None


def require_may_change(user: StaffUser, event: Event) -> None:
    if not may_change(user, event):
        raise PermissionDenied(NOT_ON_EVENT)


def has_ended(event: Event) -> bool:
    return event.end <= utc_now()


def _check_links_kept(before: Event, data: EventInput) -> None:
    """An event that has ended keeps whom it links: its recordings and messages were
    made for those people. Its title, type and times may still change (moved to a
    later time, it takes place again with the same people)."""
    if not has_ended(before):
        return
    changed = [
        field_name
        for field_name, was, wanted in (
            ("staff_ids", {s.id for s in before.staff}, set(data.staff_ids)),
            ("patient_ids", {p.id for p in before.patients}, set(data.patient_ids)),
            ("record_patient_id", before.record_patient_id, data.record_patient_id),
        )
        if was != wanted
    ]
    if changed:
        raise ValidationError(
            "This event has ended: whom it links can no longer change.", changed[0]
        )


def _staff(row: Row) -> Staff:
    return Staff(row["id"], row["name"], row["email"], row["phone"], bool(row["is_admin"]))


def _patient(row: Row) -> Patient:
    return Patient(row["id"], row["name"], row["email"], row["phone"], row["record_number"])


def _event_type(row: Row) -> EventType:
    return EventType(
        row["id"],
        row["name"],
        row["colour"],
        bool(row["video_conferencing"]),
        bool(row["public_conference"]),
    )


class Scheduler:
    def __init__(
        self,
        db: Database,
        links: JoinLinks,
        phone_region: str,
        messages_queued: Callable[[], None] = lambda: None,
        event_changed: Callable[[Event], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.links = links
        self._phone_region = phone_region
        # Wakes the outbox sender once a transaction that queued messages has committed.
        self._messages_queued = messages_queued
        # Tells the live conference pages about a committed change or cancellation.
        self._event_changed = event_changed

    # --- staff ---------------------------------------------------------------------

    async def create_staff(
        self, user: StaffUser | None, data: StaffInput, password_hash: str | None = None
    ) -> Staff:
        """user None: the command line, which acts as the system."""
        if user is not None:
            _require_admin(user)
        async with self.db.transaction() as tx:
            return await self._insert_staff(
                tx, user.actor if user else audit.SYSTEM, data, password_hash
            )

    async def create_first_admin(
        self, setup_token: str, data: StaffInput, password_hash: str
    ) -> Staff:
        """The first-run setup link's account; the link works once, and only while
        there is no staff account at all."""
        async with self.db.transaction() as tx:
            if not await setup_token_valid(tx, setup_token):
                raise PermissionDenied("This setup link has been used or has expired.")
            await tx.execute("DELETE FROM setup_tokens")
            return await self._insert_staff(
                tx, audit.SYSTEM, replace(data, is_admin=True), password_hash
            )

    async def _insert_staff(
        self, tx: Transaction, actor: audit.Actor, data: StaffInput, password_hash: str | None
    ) -> Staff:
        name = clean_name(data.name)
        email = clean_email(data.email, required=True) or ""
        phone = clean_phone(data.phone, self._phone_region)
        if await tx.fetchone("SELECT 1 FROM staff WHERE email = ?", (email,)):
            raise Conflict("A staff member with this email exists already.", "email")
        staff_id = await tx.execute(
            "INSERT INTO staff (name, email, phone, password_hash, is_admin, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, email, phone, password_hash, int(data.is_admin), to_db_time(utc_now())),
        )
        await audit.record(tx, actor, "staff_created", subject=("staff", staff_id))
        return Staff(staff_id, name, email, phone, data.is_admin)

    async def list_staff(self) -> list[Staff]:
        return [_staff(r) for r in await self.db.fetchall("SELECT * FROM staff ORDER BY name, id")]

    async def get_staff(self, staff_id: int) -> Staff:
        row = await self.db.fetchone("SELECT * FROM staff WHERE id = ?", (staff_id,))
        if row is None:
            raise NotFound("No such staff member.")
        return _staff(row)

    # --- patients ------------------------------------------------------------------

    async def create_patient(self, user: StaffUser, data: PatientInput) -> Patient:
        name = clean_name(data.name)
        record_number = clean_name(data.record_number, "record_number")
        email = clean_email(data.email, required=False)
        phone = clean_phone(data.phone, self._phone_region)
        async with self.db.transaction() as tx:
            if await tx.fetchone(
                "SELECT 1 FROM patients WHERE record_number = ?", (record_number,)
            ):
                raise Conflict("A patient with this record number exists already.", "record_number")
            patient_id = await tx.execute(
                "INSERT INTO patients (name, email, phone, record_number, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, email, phone, record_number, to_db_time(utc_now())),
            )
            await audit.record(tx, user.actor, "patient_created", subject=("patient", patient_id))
        return Patient(patient_id, name, email, phone, record_number)

    async def list_patients(self) -> list[Patient]:
        rows = await self.db.fetchall("SELECT * FROM patients ORDER BY name, id")
        return [_patient(r) for r in rows]

    async def get_patient(self, patient_id: int) -> Patient:
        row = await self.db.fetchone("SELECT * FROM patients WHERE id = ?", (patient_id,))
        if row is None:
            raise NotFound("No such patient.")
        return _patient(row)

    # --- event types ---------------------------------------------------------------

    async def create_event_type(self, user: StaffUser, data: EventTypeInput) -> EventType:
        _require_admin(user)
        name = clean_name(data.name)
        if not _COLOUR.match(data.colour):
            raise ValidationError("A colour is written #rrggbb.", "colour")
        if data.public_conference and not data.video_conferencing:
            raise ValidationError(
                "Public Conference can only be enabled when Video Conferencing is enabled.",
                "public_conference",
            )
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM event_types WHERE name = ?", (name,)):
                raise Conflict("An event type with this name exists already.", "name")
            type_id = await tx.execute(
                "INSERT INTO event_types (name, colour, video_conferencing, public_conference)"
                " VALUES (?, ?, ?, ?)",
                (name, data.colour, int(data.video_conferencing), int(data.public_conference)),
            )
            await audit.record(
                tx, user.actor, "event_type_created", subject=("event_type", type_id)
            )
        return EventType(
            type_id, name, data.colour, data.video_conferencing, data.public_conference
        )

    async def list_event_types(self) -> list[EventType]:
        rows = await self.db.fetchall("SELECT * FROM event_types ORDER BY name, id")
        return [_event_type(r) for r in rows]

    # --- events --------------------------------------------------------------------

    async def create_event(self, user: StaffUser, data: EventInput) -> SavedEvent:
        async with self.db.transaction() as tx:
            await self._check_event(tx, data)
            now = to_db_time(utc_now())
            event_id = await tx.execute(
                "INSERT INTO events (title, event_type_id, start_at, end_at, record_patient_id,"
                " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    clean_name(data.title, "title"),
                    data.event_type_id,
                    to_db_time(data.start),
                    to_db_time(data.end),
                    data.record_patient_id,
                    user.id,
                    now,
                    now,
                ),
            )
            await self._link_people(tx, event_id, data)
            event = await self._load_event(tx, event_id)
            await self._sync_join_links(tx, event)
            saved = await self._queue_for_everyone(tx, event, "invitation")
            await audit.record(tx, user.actor, "event_created", event_id=event_id)
        self._messages_queued()
        return saved

    async def update_event(self, user: StaffUser, event_id: int, data: EventInput) -> SavedEvent:
        async with self.db.transaction() as tx:
            before = await self._load_event(tx, event_id)
            require_may_change(user, before)
            if before.cancelled:
                raise Conflict("A cancelled event cannot be changed.")
            await self._check_event(tx, data)
            _check_links_kept(before, data)
            await tx.execute(
                "UPDATE events SET title = ?, event_type_id = ?, start_at = ?, end_at = ?,"
                " record_patient_id = ?, sequence = sequence + 1, updated_at = ? WHERE id = ?",
                (
                    clean_name(data.title, "title"),
                    data.event_type_id,
                    to_db_time(data.start),
                    to_db_time(data.end),
                    data.record_patient_id,
                    to_db_time(utc_now()),
                    event_id,
                ),
            )
            await tx.execute("DELETE FROM event_staff WHERE event_id = ?", (event_id,))
            await tx.execute("DELETE FROM event_patients WHERE event_id = ?", (event_id,))
            await self._link_people(tx, event_id, data)
            event = await self._load_event(tx, event_id)
            await self._sync_join_links(tx, event)
            # People taken off the event learn that it no longer concerns them.
            for person in before.staff:
                if event.person("staff", person.id) is None:
                    await self._queue(tx, event, "cancellation", "email", "staff", person)
            for patient in before.patients:
                if event.person("patient", patient.id) is None:
                    await self._queue(tx, event, "cancellation", "email", "patient", patient)
            saved = await self._queue_for_everyone(tx, event, "invitation")
            await audit.record(tx, user.actor, "event_changed", event_id=event_id)
        self._messages_queued()
        if self._event_changed is not None:
            await self._event_changed(saved.event)
        return saved

    async def cancel_event(self, user: StaffUser, event_id: int) -> Event:
        async with self.db.transaction() as tx:
            event = await self._load_event(tx, event_id)
            require_may_change(user, event)
            if event.cancelled:
                raise Conflict("This event is cancelled already.")
            await tx.execute(
                "UPDATE events SET status = 'cancelled', sequence = sequence + 1, updated_at = ?"
                " WHERE id = ?",
                (to_db_time(utc_now()), event_id),
            )
            event = await self._load_event(tx, event_id)
            await self._queue_for_everyone(tx, event, "cancellation")
            await audit.record(tx, user.actor, "event_cancelled", event_id=event_id)
        self._messages_queued()
        if self._event_changed is not None:
            await self._event_changed(event)
        return event

    async def get_event(self, event_id: int) -> Event:
        async with self.db.transaction() as tx:
            return await self._load_event(tx, event_id)

    async def events_between(self, start: datetime, end: datetime) -> list[Event]:
        """Events overlapping [start, end), cancelled ones included."""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM events WHERE start_at < ? AND end_at > ? ORDER BY start_at, id",
                (to_db_time(end), to_db_time(start)),
            )
            return [await self._load_event(tx, row["id"]) for row in rows]

    # --- join links ----------------------------------------------------------------

    async def person_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int
    ) -> str:
        """A linked person's join link, for staff to copy; the copy is audited."""
        async with self.db.transaction() as tx:
            event = await self._open_event_with_video(tx, event_id)
            require_may_change(user, event)
            if event.person(kind, person_id) is None:
                raise NotFound(f"This {kind} is not linked to the event.")
            link_id = await self.links.ensure(tx, event_id, kind, person_id)
            url = await self.links.url(tx, link_id)
            await audit.record(
                tx, user.actor, "link_copied", event_id=event_id, subject=(kind, person_id)
            )
        return url

    async def my_link(self, user: StaffUser, event_id: int) -> str:
        """The signed-in staff member's own link, created for an administrator who is
        not linked. A staff link makes its holder a host, who sees and hears the
        patients and decides who stays: a colleague covering is linked to the event
        first, by its staff or an administrator."""
        async with self.db.transaction() as tx:
            require_may_change(user, await self._open_event_with_video(tx, event_id))
            link_id = await self.links.ensure(tx, event_id, "staff", user.id, self_issued=True)
            await audit.record(
                tx, user.actor, "link_copied", event_id=event_id, subject=("staff", user.id)
            )
            return await self.links.url(tx, link_id)

    async def public_link(self, user: StaffUser, event_id: int) -> str:
        async with self.db.transaction() as tx:
            event = await self._open_event_with_video(tx, event_id)
            require_may_change(user, event)
            if not event.event_type.public_conference:
                raise Conflict("This event is not a Public Conference.")
            url = await self.links.url(tx, await self.links.ensure(tx, event_id, "public", None))
            await audit.record(tx, user.actor, "public_link_copied", event_id=event_id)
        return url

    async def send_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int, channel: Channel
    ) -> None:
        async with self.db.transaction() as tx:
            event = await self._open_event_with_video(tx, event_id)
            require_may_change(user, event)
            person = event.person(kind, person_id)
            if person is None:
                raise NotFound(f"This {kind} is not linked to the event.")
            if channel == "sms" and not person.phone:
                raise ValidationError(f"{person.name} has no phone number.", "channel")
            if channel == "email" and not person.email:
                raise ValidationError(f"{person.name} has no email address.", "channel")
            await outbox.enqueue(tx, "join_link", channel, event_id, kind, person_id)
            await audit.record(
                tx,
                user.actor,
                "link_sent",
                event_id=event_id,
                subject=(kind, person_id),
                channel=channel,
            )
        self._messages_queued()

    async def all_links(self, user: StaffUser, event_id: int) -> dict[str, object]:
        """Every join link of an event, for the API; handing them out is audited."""
        async with self.db.transaction() as tx:
            event = await self._load_event(tx, event_id)
            require_may_change(user, event)
            staff, patients = [], []
            if event.event_type.video_conferencing:
                for person in event.staff:
                    url = await self.links.url_for(tx, event.id, "staff", person.id)
                    staff.append({"id": person.id, "name": person.name, "url": url})
                for patient in event.patients:
                    url = await self.links.url_for(tx, event.id, "patient", patient.id)
                    patients.append({"id": patient.id, "name": patient.name, "url": url})
            public = await self.links.url_for(tx, event.id, "public", None)
            await audit.record(tx, user.actor, "links_listed", event_id=event_id)
        return {"staff": staff, "patients": patients, "public": public}

    # --- internals -----------------------------------------------------------------

    async def _check_event(self, tx: Transaction, data: EventInput) -> None:
        clean_name(data.title, "title")
        type_row = await tx.fetchone(
            "SELECT * FROM event_types WHERE id = ?", (data.event_type_id,)
        )
        if type_row is None:
            raise ValidationError("No such event type.", "event_type_id")
        if data.start.tzinfo is None or data.end.tzinfo is None:
            raise ValidationError("Times need a time zone offset.", "start")
        if data.end <= data.start:
            raise ValidationError("The end must be after the start.", "end")
        if data.end - data.start > MAX_EVENT_LENGTH:
            raise ValidationError("An event lasts at most 24 hours.", "end")
        if len(set(data.staff_ids)) != len(data.staff_ids):
            raise ValidationError("A staff member is listed twice.", "staff_ids")
        if len(set(data.patient_ids)) != len(data.patient_ids):
            raise ValidationError("A patient is listed twice.", "patient_ids")
        for table, ids, field_name in (
            ("staff", data.staff_ids, "staff_ids"),
            ("patients", data.patient_ids, "patient_ids"),
        ):
            for person_id in ids:
                if not await tx.fetchone(f"SELECT 1 FROM {table} WHERE id = ?", (person_id,)):  # noqa: S608
                    raise ValidationError(f"Unknown id {person_id}.", field_name)
        if data.record_patient_id is not None:
            if not type_row["public_conference"]:
                raise ValidationError(
                    "Only a Public Conference names a patient record; a telehealth session"
                    " belongs to its patients' records.",
                    "record_patient_id",
                )
            if not await tx.fetchone(
                "SELECT 1 FROM patients WHERE id = ?", (data.record_patient_id,)
            ):
                raise ValidationError("No such patient.", "record_patient_id")

    async def _link_people(self, tx: Transaction, event_id: int, data: EventInput) -> None:
        await tx.executemany(
            "INSERT INTO event_staff (event_id, staff_id) VALUES (?, ?)",
            [(event_id, s) for s in data.staff_ids],
        )
        await tx.executemany(
            "INSERT INTO event_patients (event_id, patient_id) VALUES (?, ?)",
            [(event_id, p) for p in data.patient_ids],
        )

    async def _sync_join_links(self, tx: Transaction, event: Event) -> None:
        """Exactly the links the event needs: one per linked person and a public one
        for a Public Conference. A removed person's link stops working; an
        administrator's own link from "Get My Conference Link" stays (it opens only
        while they are an administrator: web/views/join.py)."""
        if not event.event_type.video_conferencing:
            await tx.execute("DELETE FROM join_links WHERE event_id = ?", (event.id,))
            return
        linked = {("staff", s.id) for s in event.staff} | {
            ("patient", p.id) for p in event.patients
        }
        for row in await tx.fetchall(
            "SELECT id, kind, person_id FROM join_links"
            " WHERE event_id = ? AND kind != 'public' AND self_issued = 0",
            (event.id,),
        ):
            if (row["kind"], row["person_id"]) not in linked:
                await tx.execute("DELETE FROM join_links WHERE id = ?", (row["id"],))
        wanted: list[tuple[LinkKind, int | None]] = [("staff", s.id) for s in event.staff]
        wanted += [("patient", p.id) for p in event.patients]
        if event.event_type.public_conference:
            wanted.append(("public", None))
        else:
            await tx.execute(
                "DELETE FROM join_links WHERE event_id = ? AND kind = 'public'", (event.id,)
            )
        for kind, person_id in wanted:
            await self.links.ensure(tx, event.id, kind, person_id)

    async def _queue(
        self,
        tx: Transaction,
        event: Event,
        kind: MessageKind,
        channel: Channel,
        person_kind: PersonKind,
        person: Staff | Patient,
    ) -> bool:
        if channel == "email" and not person.email:
            return False
        await outbox.enqueue(tx, kind, channel, event.id, person_kind, person.id)
        return True

    async def _queue_for_everyone(
        self, tx: Transaction, event: Event, kind: MessageKind
    ) -> SavedEvent:
        emailed: list[str] = []
        not_emailed: list[str] = []
        people: list[tuple[PersonKind, Staff | Patient]] = [("staff", s) for s in event.staff]
        people += [("patient", p) for p in event.patients]
        for person_kind, person in people:
            queued = await self._queue(tx, event, kind, "email", person_kind, person)
            (emailed if queued else not_emailed).append(person.name)
        return SavedEvent(event, emailed, not_emailed)

    async def _open_event_with_video(self, tx: Transaction, event_id: int) -> Event:
        event = await self._load_event(tx, event_id)
        if event.cancelled:
            raise Conflict("This event is cancelled.")
        if not event.event_type.video_conferencing:
            raise Conflict("This event has no video conferencing.")
        return event

    async def _load_event(self, tx: Transaction, event_id: int) -> Event:
        row = await tx.fetchone("SELECT * FROM events WHERE id = ?", (event_id,))
        if row is None:
            raise NotFound("No such event.")
        type_row = await tx.fetchone(
            "SELECT * FROM event_types WHERE id = ?", (row["event_type_id"],)
        )
        assert type_row is not None, "a foreign key keeps the event's type"
        staff = await tx.fetchall(
            "SELECT staff.* FROM event_staff JOIN staff ON staff.id = event_staff.staff_id"
            " WHERE event_id = ? ORDER BY staff.name, staff.id",
            (event_id,),
        )
        patients = await tx.fetchall(
            "SELECT patients.* FROM event_patients"
            " JOIN patients ON patients.id = event_patients.patient_id"
            " WHERE event_id = ? ORDER BY patients.name, patients.id",
            (event_id,),
        )
        return Event(
            id=row["id"],
            title=row["title"],
            event_type=_event_type(type_row),
            start=from_db_time(row["start_at"]),
            end=from_db_time(row["end_at"]),
            status=row["status"],
            record_patient_id=row["record_patient_id"],
            sequence=row["sequence"],
            staff=[_staff(r) for r in staff],
            patients=[_patient(r) for r in patients],
        )
