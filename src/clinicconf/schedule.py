"""The schedule's model: staff, patients, event types and events as the rest of the
server sees them, what pages and the API ask to create, and the rules that need only
these values (validation, who may change an event).

Any staff member may create an event; only its linked staff and the administrators
may change or cancel it, copy, send or list its join links, or get a link of their
own to it (may_change). Once it has ended, whom it links stays as it was.

Reading and writing them is clinicconf.scheduling's work; this module knows no
database and no messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import phonenumbers

from . import names
from .accounts import StaffUser
from .db import utc_now
from .errors import PermissionDenied, ValidationError
from .links import LinkWindow, link_window

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


def require_admin(user: StaffUser) -> None:
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


def check_links_kept(before: Event, data: EventInput) -> None:
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


def check_event_type(data: EventTypeInput) -> str:
    """A new event type's name, cleaned; raises ValidationError for what no stored
    row could make right."""
    name = clean_name(data.name)
    if not _COLOUR.match(data.colour):
        raise ValidationError("A colour is written #rrggbb.", "colour")
    if data.public_conference and not data.video_conferencing:
        raise ValidationError(
            "Public Conference can only be enabled when Video Conferencing is enabled.",
            "public_conference",
        )
    return name


def check_times_and_people(data: EventInput) -> None:
    """An event's times and lists as they must be, whatever is stored."""
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
