"""The JSON API's bodies and answers, each declared once as a pydantic model.

A body is read by its model and converted into the core's input dataclass here, at
the edge (the core knows nothing of pydantic); an answer is written through its
model; the OpenAPI document's schemas are these models' (web/openapi.py). So the
document, the checks and the answers cannot disagree. A field's docstring is its
description in the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .. import schedule as domain
from ..errors import ValidationError
from ..notify.outbox import Channel

M = TypeVar("M", bound=BaseModel)

# Every integer in the API is a row id, and SQLite's integers stop here.
MAX_ID: Final = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Count = Annotated[int, Field(ge=0)]
Url = Annotated[str, Field(json_schema_extra={"format": "uri"})]

TIME_FORMAT: Final = (
    "ISO 8601 with a time zone offset, e.g. 2025-03-01T09:30:00+01:00 or 2025-03-01T08:30:00Z"
)
_TIME_SCHEMA: Final = {"type": "string", "format": "date-time"}


def _utc_time(value: object) -> datetime:
    """An ISO 8601 time with its offset, as UTC. A time without an offset is refused:
    it would be read in whatever zone the server guessed."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved to UTC
            pass
    raise PydanticCustomError(
        "time",
        "Must be an ISO 8601 time with a time zone offset, such as 2025-03-01T09:30:00+01:00"
        " or 2025-03-01T08:30:00Z.",
    )


def time_json(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# A time a client sends: text with an offset, read as UTC.
TimeInput = Annotated[
    datetime, pydantic.PlainValidator(_utc_time), pydantic.WithJsonSchema(_TIME_SCHEMA)
]
# A time the API answers: in UTC, written with Z.
Time = Annotated[
    datetime, pydantic.PlainSerializer(time_json), pydantic.WithJsonSchema(_TIME_SCHEMA)
]


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """`data` read by `model`, or the domain's ValidationError naming the field at
    fault: an unknown one first (likely misspelt), else the first in the model."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = min(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        field = str(first["loc"][0]) if first["loc"] else None
        messages = {
            "missing": "This field is required.",
            "extra_forbidden": f"Unknown field {field!r}.",
        }
        raise ValidationError(messages.get(first["type"], first["msg"]), field) from None


# --- what clients send --------------------------------------------------------------


class Body(BaseModel):
    """A request's body: JSON's own types only (true is not an id, "3" not a number),
    and no field the model does not name: a misspelt one would lose data unnoticed."""

    model_config = ConfigDict(strict=True, extra="forbid", use_attribute_docstrings=True)


class StaffInput(Body):
    name: str
    email: str
    phone: str | None = None
    """E.164 (+12025550123), or a national number of the server's phone region."""
    is_admin: bool = False
    """An administrator. The new staff member can sign in to the pages once a password is
    set for them (`python -m clinicconf set-password`)."""

    def to_domain(self) -> domain.StaffInput:
        return domain.StaffInput(**dict(self))


class PatientInput(Body):
    name: str
    record_number: str
    email: str | None = None
    phone: str | None = None
    """E.164 (+12025550123), or a national number of the server's phone region."""

    def to_domain(self) -> domain.PatientInput:
        return domain.PatientInput(**dict(self))


class EventTypeInput(Body):
    name: str
    video_conferencing: bool
    public_conference: bool
    """Adds a shared public link; needs video_conferencing."""
    colour: str = "#3a7bd5"
    """#rrggbb"""

    def to_domain(self) -> domain.EventTypeInput:
        return domain.EventTypeInput(**dict(self))


class EventInput(Body):
    title: str
    event_type_id: Id
    start: TimeInput = Field(description=TIME_FORMAT)
    end: TimeInput = Field(description=TIME_FORMAT + "; after start, at most 24 hours later")
    staff_ids: list[Id]
    patient_ids: list[Id]
    record_patient_id: Id | None = None
    """Only for a Public Conference: the patient record it belongs to."""

    def to_domain(self) -> domain.EventInput:
        return domain.EventInput(**dict(self))


class LinkDelivery(Body):
    """How to send a participant their join link."""

    channel: Channel


class EventWindow(BaseModel):
    """GET /events' query: the time range the events overlap (other parameters are
    ignored, as in most query strings)."""

    start: TimeInput = Field(
        alias="from",
        description="The start of the time range: " + TIME_FORMAT + " (write + as %2B).",
    )
    end: TimeInput = Field(
        alias="to", description="The end of the time range, after from and at most 366 days later."
    )


# --- what the API answers -----------------------------------------------------------


class Reply(BaseModel):
    """An answer: every field always present, no other; read from the core's
    dataclasses by their attributes."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, use_attribute_docstrings=True)


class Staff(Reply):
    id: Id
    name: str
    email: str
    phone: str | None
    is_admin: bool


class Patient(Reply):
    id: Id
    name: str
    email: str | None
    phone: str | None
    record_number: str


class EventType(Reply):
    id: Id
    name: str
    colour: str
    video_conferencing: bool
    public_conference: bool


class Person(Reply):
    """A participant by name only: the event's others' contact details are not its business."""

    id: Id
    name: str


class Event(Reply):
    id: Id
    title: str
    event_type: EventType
    start: Time
    """UTC."""
    end: Time
    """UTC."""
    status: Literal["scheduled", "cancelled"]
    record_patient_id: Id | None
    staff: list[Person]
    patients: list[Person]


class Invitations(Reply):
    """Who is sent an invitation email, and who has no email address."""

    emailed: list[str]
    not_emailed: list[str]


class CreatedEvent(Event):
    invitations: Invitations

    @classmethod
    def of(cls, saved: domain.SavedEvent) -> CreatedEvent:
        invitations = Invitations.model_validate(saved)
        return cls(**dict(Event.model_validate(saved.event)), invitations=invitations)


class PersonLink(Reply):
    id: Id
    name: str
    url: Url


class Links(Reply):
    staff: list[PersonLink]
    patients: list[PersonLink]
    public: str | None
    """The shared link of a Public Conference; null for other events."""


class RecordedEvent(Reply):
    id: Id
    title: str


class Attendee(Reply):
    participant: str
    name: str
    kind: str


class Recording(Reply):
    id: Id
    event: RecordedEvent
    patient_ids: list[Id]
    """The patient records it is filed in: the patients present while it recorded (and
    the record a Public Conference is tied to). A patient linked to the event who was
    not present does not have it."""
    started_at: Time
    """UTC."""
    ended_at: Time | None
    """UTC; null while it is recorded, or if the server stopped."""
    state: Literal["recording", "composing", "ready", "failed"]
    interrupted: bool
    """It stopped before the conference's end."""
    interruption: str | None
    """Why it stopped early, when the server could say (not after a crash)."""
    failure: str | None
    """Why it failed."""
    progress: Count = Field(le=100, description="Composing, in whole per cent.")
    duration_ms: Count | None
    size_bytes: Count
    """The composed file's size; until there is one, its tracks'."""
    present: list[Attendee]
    """Who took part while it was recorded; participant is the id that names their
    track files."""


class RecordingFile(Reply):
    name: str
    kind: Literal["composed", "audio", "video"]
    participant: str | None
    """A track's participant id in the conference; null if composed."""
    size_bytes: Count
    url: Url


class RecordingDetail(Recording):
    files: list[RecordingFile]


class PatientRecordings(Reply):
    recordings: list[Recording]
    not_shown: Count
    """How many other recordings of this patient it may not reach."""


class Queued(Reply):
    status: Literal["queued"]
    channel: Channel


class ErrorDetail(Reply):
    code: str
    """Stable, for programs: e.g. invalid, conflict."""
    message: str
    """For people."""
    field: str | None
    """The body field or query parameter at fault, if one is."""


class Error(Reply):
    """Every refusal's body (web/middleware.py writes it)."""

    error: ErrorDetail
