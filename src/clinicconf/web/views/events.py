"""The event pages: create, edit, view (with each person's link menu) and cancel,
and the small JSON endpoints that the pages' scripts call."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy

from ... import keys
from ...errors import BadRequest, Conflict, ValidationError
from ...notify import outbox
from ...notify.outbox import Channel, OutboxEntry
from ...schedule import (
    Event,
    EventInput,
    Patient,
    PersonKind,
    Staff,
    has_ended,
    may_change,
    require_may_change,
)
from ..forms import field_errors
from ..middleware import current_user, scheduler_of
from ..rendering import render
from .recordings import listing

routes = web.RouteTableDef()

# An id as the URL or a form gives it: digits that fit SQLite's 64-bit integers.
ID: Final = r"\d{1,18}"
EVENT: Final = rf"/events/{{event_id:{ID}}}"
PERSON: Final = EVENT + rf"/people/{{kind:staff|patient}}/{{person_id:{ID}}}"
# The value format of <input type="datetime-local">, in the clinic's time zone.
LOCAL_INPUT_FORMAT: Final = "%Y-%m-%dT%H:%M"
_CHANNELS: Final[dict[str, Channel]] = {"sms": "sms", "email": "email"}
_MESSAGE_KINDS: Final = {
    "invitation": "Invitation",
    "join_link": "Join link",
    "cancellation": "Cancellation",
}
_CHANNEL_NAMES: Final = {"email": "Email", "sms": "SMS"}


def _zone(request: web.Request) -> ZoneInfo:
    return request.app[keys.SETTINGS].zone


def _event_id(request: web.Request) -> int:
    return int(request.match_info["event_id"])


def _person(request: web.Request) -> tuple[PersonKind, int]:
    kind: PersonKind = "staff" if request.match_info["kind"] == "staff" else "patient"
    return kind, int(request.match_info["person_id"])


def parse_local_time(value: str, zone: ZoneInfo, field_name: str) -> datetime:
    """A datetime-local form value, read in the clinic's time zone."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        naive = None
    if naive is None or naive.tzinfo is not None:
        raise ValidationError("Enter a date and a time.", field_name)
    moment = naive.replace(tzinfo=zone)
    # A time skipped when the clocks go forward comes back changed from UTC.
    if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValidationError(
            "This time does not exist in the clinic's time zone: the clocks change.", field_name
        )
    return moment


def _id(value: str, field_name: str, message: str = "Choose from the list.") -> int:
    if not re.fullmatch(ID, value):
        raise ValidationError(message, field_name)
    return int(value)


@dataclass
class EventForm:
    """The form's values as typed, so that a refused form comes back as it was left."""

    title: str = ""
    event_type_id: str = ""
    start: str = ""
    end: str = ""
    staff_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    record_patient_id: str = ""

    @classmethod
    def from_post(cls, data: MultiDictProxy[Any]) -> EventForm:
        return cls(
            title=str(data.get("title", "")),
            event_type_id=str(data.get("event_type_id", "")),
            start=str(data.get("start", "")),
            end=str(data.get("end", "")),
            staff_ids=[str(v) for v in data.getall("staff_ids", [])],
            patient_ids=[str(v) for v in data.getall("patient_ids", [])],
            record_patient_id=str(data.get("record_patient_id", "")),
        )

    @classmethod
    def from_event(cls, event: Event, zone: ZoneInfo) -> EventForm:
        return cls(
            title=event.title,
            event_type_id=str(event.event_type.id),
            start=event.start.astimezone(zone).strftime(LOCAL_INPUT_FORMAT),
            end=event.end.astimezone(zone).strftime(LOCAL_INPUT_FORMAT),
            staff_ids=[str(s.id) for s in event.staff],
            patient_ids=[str(p.id) for p in event.patients],
            record_patient_id=str(event.record_patient_id or ""),
        )

    def to_input(self, zone: ZoneInfo) -> EventInput:
        """What the Scheduler checks further; raises ValidationError for what it cannot read."""
        return EventInput(
            title=self.title,
            event_type_id=_id(self.event_type_id, "event_type_id", "Choose an event type."),
            start=parse_local_time(self.start, zone, "start"),
            end=parse_local_time(self.end, zone, "end"),
            staff_ids=[_id(v, "staff_ids") for v in self.staff_ids],
            patient_ids=[_id(v, "patient_ids") for v in self.patient_ids],
            record_patient_id=(
                _id(self.record_patient_id, "record_patient_id") if self.record_patient_id else None
            ),
        )


# What staff need to know when nothing is set up to send a message.
_NOT_CONFIGURED: Final = {
    "email": "Not sent: no mail server is configured (saved on the server)",
    "sms": "Not sent: no SMS account is configured (saved on the server)",
}


@dataclass(frozen=True)
class Delivery:
    """One outbox message as the event page lists it."""

    kind: str
    channel: str
    recipient: str
    state: str
    status: str

    @classmethod
    def of(cls, entry: OutboxEntry) -> Delivery:
        if entry.status == "sent":
            status = "Sent"
        elif entry.status == "failed":
            status = f"Failed: {entry.last_error}"
        elif entry.status == "superseded":
            status = "Not sent: replaced by a newer message"
        elif entry.status == "saved":
            status = _NOT_CONFIGURED[entry.channel]
        elif entry.attempts == 0:
            status = "Waiting to be sent"
        else:
            status = f"Waiting to retry (attempt {entry.attempts}): {entry.last_error}"
        return cls(
            kind=_MESSAGE_KINDS[entry.kind],
            channel=_CHANNEL_NAMES[entry.channel],
            recipient=entry.recipient_name or "(no longer on file)",
            state=entry.status,
            status=status,
        )


async def _render_form(
    request: web.Request,
    form: EventForm,
    event: Event | None = None,
    error: ValidationError | None = None,
) -> web.Response:
    scheduler = scheduler_of(request)
    return render(
        request,
        "event_form.html",
        status=422 if error else 200,
        form=form,
        errors={} if error is None else field_errors(error),
        event=event,
        ended=event is not None and has_ended(event),
        event_types=await scheduler.list_event_types(),
        staff=await scheduler.list_staff(),
        patients=await scheduler.list_patients(),
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


# --- pages -----------------------------------------------------------------------------


@routes.get("/events/new")
async def new_event(request: web.Request) -> web.Response:
    user = current_user(request)
    # Whoever plans the event usually takes part in it.
    return await _render_form(request, EventForm(staff_ids=[str(user.id)]))


@routes.post("/events")
async def create_event(request: web.Request) -> web.Response:
    user = current_user(request)
    form = EventForm.from_post(await request.post())
    try:
        saved = await scheduler_of(request).create_event(user, form.to_input(_zone(request)))
    except ValidationError as exc:
        return await _render_form(request, form, error=exc)
    raise web.HTTPSeeOther(f"/events/{saved.event.id}?saved=1")


@routes.get(EVENT + "/edit")
async def edit_event(request: web.Request) -> web.Response:
    user = current_user(request)
    event = await scheduler_of(request).get_event(_event_id(request))
    require_may_change(user, event)
    if event.cancelled:
        raise Conflict("A cancelled event cannot be changed.")
    return await _render_form(request, EventForm.from_event(event, _zone(request)), event)


@routes.post(EVENT + "/edit")
async def update_event(request: web.Request) -> web.Response:
    user = current_user(request)
    scheduler = scheduler_of(request)
    event = await scheduler.get_event(_event_id(request))
    # Refused before the form is read: what it holds is no business of this user's.
    require_may_change(user, event)
    form = EventForm.from_post(await request.post())
    try:
        await scheduler.update_event(user, event.id, form.to_input(_zone(request)))
    except ValidationError as exc:
        return await _render_form(request, form, await scheduler.get_event(event.id), exc)
    raise web.HTTPSeeOther(f"/events/{event.id}?saved=1")


@routes.get(EVENT)
async def show_event(request: web.Request) -> web.Response:
    user = current_user(request)
    scheduler = scheduler_of(request)
    event = await scheduler.get_event(_event_id(request))
    people: list[Staff | Patient] = [*event.staff, *event.patients]
    record_patient = (
        await scheduler.get_patient(event.record_patient_id) if event.record_patient_id else None
    )
    entries = await outbox.entries_for_event(request.app[keys.DATABASE], event.id)
    return render(
        request,
        "event.html",
        event=event,
        record_patient=record_patient,
        may_change=may_change(user, event),
        # After saving, the invitations just queued go to exactly the people with an
        # email address: read them again rather than carry names in the URL.
        saved="saved" in request.query and not event.cancelled,
        emailed=[p.name for p in people if p.email],
        not_emailed=[p.name for p in people if not p.email],
        just_cancelled="cancelled" in request.query and event.cancelled,
        deliveries=[Delivery.of(entry) for entry in entries],
        recordings=listing(request, user, await request.app[keys.RECORDINGS].for_event(event.id)),
        recording_deleted="recording_deleted" in request.query,
    )


@routes.get(EVENT + "/cancel")
async def confirm_cancel(request: web.Request) -> web.Response:
    user = current_user(request)
    event = await scheduler_of(request).get_event(_event_id(request))
    require_may_change(user, event)
    if event.cancelled:
        raise Conflict("This event is cancelled already.")
    return render(request, "event_cancel.html", event=event)


@routes.post(EVENT + "/cancel")
async def cancel_event(request: web.Request) -> web.Response:
    user = current_user(request)
    event = await scheduler_of(request).cancel_event(user, _event_id(request))
    raise web.HTTPSeeOther(f"/events/{event.id}?cancelled=1")


# --- JSON for the pages' scripts (CSRF header checked by the middleware) ---------------


@routes.post(PERSON + "/link")
async def person_link(request: web.Request) -> web.Response:
    user = current_user(request)
    kind, person_id = _person(request)
    url = await scheduler_of(request).person_link(user, _event_id(request), kind, person_id)
    return web.json_response({"url": url})


@routes.post(PERSON + "/send")
async def send_person_link(request: web.Request) -> web.Response:
    user = current_user(request)
    kind, person_id = _person(request)
    channel = _CHANNELS.get(str((await _json_body(request)).get("channel")))
    if channel is None:
        raise ValidationError('The channel is "sms" or "email".', "channel")
    await scheduler_of(request).send_link(user, _event_id(request), kind, person_id, channel)
    return web.json_response({"channel": channel}, status=202)


@routes.post(EVENT + "/my-link")
async def my_link(request: web.Request) -> web.Response:
    user = current_user(request)
    return web.json_response({"url": await scheduler_of(request).my_link(user, _event_id(request))})


@routes.post(EVENT + "/public-link")
async def public_link(request: web.Request) -> web.Response:
    user = current_user(request)
    url = await scheduler_of(request).public_link(user, _event_id(request))
    return web.json_response({"url": url})
