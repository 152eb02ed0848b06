"""The JSON API under /api/v1, for the clinic's EHR and scripts.

The middleware has already checked the bearer token (web/middleware.py) and maps
every domain error to {"error": {...}}. Views here only read the request through
its models (web/api_models.py) and call the Scheduler, which applies the rules and
writes the audit log; what a view returns is written through its route's answer
model. Each route is declared with what the OpenAPI document says of it
(web/api_routes.py); the document covers these and the recordings' API routes.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Final

from aiohttp import web

from ...errors import ValidationError
from ...schedule import Event, EventType, Patient, PersonKind, Staff
from .. import api_models as models
from .. import openapi
from ..api_routes import Answer, ApiRoutes, path_id, read_body, read_query
from ..middleware import current_user, scheduler_of
from ..openapi import BODY_ERRORS
from . import recordings

routes = web.RouteTableDef()
API: Final = ApiRoutes(routes)

# GET /events answers at most this span at once.
MAX_RANGE: Final = timedelta(days=366)
# The URL names the lists as the event representation does; the domain in the singular.
_PERSON_KINDS: Final[dict[str, PersonKind]] = {"staff": "staff", "patients": "patient"}

# Refusals that several routes share, as the document words them.
ADMIN_ONLY: Final = {403: "Only an administrator's token may do this."}
NO_EVENT: Final = {404: "No event has this id."}
NOT_ON_EVENT: Final = {
    403: "Only a token of the event's staff or of an administrator may change the event"
    " or hand out its links."
}


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document of every API route: this module's and the recordings'."""
    return openapi.document([*API.operations, *recordings.API.operations])


@API.route(
    "GET",
    "/openapi.json",
    "This document. Needs no token.",
    Answer(200, "This document.", {"type": "object"}),
    public=True,
)
async def openapi_document(request: web.Request) -> dict[str, Any]:
    return document()


@API.route(
    "GET",
    "/staff",
    "All staff members, by name.",
    Answer(200, "The staff members.", models.Staff, many=True),
)
async def list_staff(request: web.Request) -> list[Staff]:
    return await scheduler_of(request).list_staff()


@API.route(
    "POST",
    "/staff",
    "Add a staff member (administrators only).",
    Answer(201, "The new staff member.", models.Staff),
    body=models.StaffInput,
    errors=ADMIN_ONLY | {409: "A staff member has this email address already."},
)
async def create_staff(request: web.Request) -> Staff:
    data = (await read_body(request, models.StaffInput)).to_domain()
    return await scheduler_of(request).create_staff(current_user(request), data)


@API.route(
    "GET",
    "/patients",
    "All patients, by name.",
    Answer(200, "The patients.", models.Patient, many=True),
)
async def list_patients(request: web.Request) -> list[Patient]:
    return await scheduler_of(request).list_patients()


@API.route(
    "POST",
    "/patients",
    "Add a patient.",
    Answer(201, "The new patient.", models.Patient),
    body=models.PatientInput,
    errors={409: "A patient has this record number already."},
)
async def create_patient(request: web.Request) -> Patient:
    data = (await read_body(request, models.PatientInput)).to_domain()
    return await scheduler_of(request).create_patient(current_user(request), data)


@API.route(
    "GET",
    "/event-types",
    "All event types, by name.",
    Answer(200, "The event types.", models.EventType, many=True),
)
async def list_event_types(request: web.Request) -> list[EventType]:
    return await scheduler_of(request).list_event_types()


@API.route(
    "POST",
    "/event-types",
    "Add an event type (administrators only).",
    Answer(201, "The new event type.", models.EventType),
    body=models.EventTypeInput,
    errors=ADMIN_ONLY
    | {
        409: "An event type has this name already.",
        422: BODY_ERRORS[422] + " public_conference is refused without video_conferencing.",
    },
)
async def create_event_type(request: web.Request) -> EventType:
    data = (await read_body(request, models.EventTypeInput)).to_domain()
    return await scheduler_of(request).create_event_type(current_user(request), data)


@API.route(
    "GET",
    "/events",
    "The events overlapping a time range, cancelled ones included, by start.",
    Answer(200, "The events.", models.Event, many=True),
    query=models.EventWindow,
    errors={422: "from or to is missing or wrong; error.field names it."},
)
async def list_events(request: web.Request) -> list[Event]:
    window = read_query(request, models.EventWindow)
    if window.end <= window.start:
        raise ValidationError("Must be after from.", "to")
    if window.end - window.start > MAX_RANGE:
        raise ValidationError(f"At most {MAX_RANGE.days} days after from.", "to")
    return await scheduler_of(request).events_between(window.start, window.end)


@API.route(
    "POST",
    "/events",
    "Schedule an event. Every linked person with an email address is sent an invitation"
    " with their own join link.",
    Answer(201, "The new event.", models.CreatedEvent),
    body=models.EventInput,
    errors={
        422: BODY_ERRORS[422] + " Also: an unknown event type, staff member or patient id,"
        " an end not after the start."
    },
)
async def create_event(request: web.Request) -> models.CreatedEvent:
    data = (await read_body(request, models.EventInput)).to_domain()
    saved = await scheduler_of(request).create_event(current_user(request), data)
    return models.CreatedEvent.of(saved)


@API.route(
    "GET",
    "/events/{event_id}",
    "One event.",
    Answer(200, "The event.", models.Event),
    errors=NO_EVENT,
)
async def get_event(request: web.Request) -> Event:
    return await scheduler_of(request).get_event(path_id(request, "event_id"))


@API.route(
    "GET",
    "/events/{event_id}/links",
    "Every join link of an event (empty lists for an event without video conferencing)."
    " Handing them out is audited.",
    Answer(200, "The links.", models.Links),
    errors=NO_EVENT | NOT_ON_EVENT,
)
async def get_links(request: web.Request) -> dict[str, object]:
    return await scheduler_of(request).all_links(
        current_user(request), path_id(request, "event_id")
    )


@API.route(
    "POST",
    "/events/{event_id}/cancel",
    "Cancel an event: its links stop working and its participants are told.",
    Answer(200, "The cancelled event.", models.Event),
    errors=NO_EVENT | NOT_ON_EVENT | {409: "The event is cancelled already."},
)
async def cancel_event(request: web.Request) -> Event:
    event_id = path_id(request, "event_id")
    return await scheduler_of(request).cancel_event(current_user(request), event_id)


@API.route(
    "POST",
    "/events/{event_id}/participants/{kind:staff|patients}/{person_id}/send",
    "Send a participant their join link by SMS or email. The message is queued and"
    " delivered in the background, with retries.",
    Answer(202, "The message is queued.", models.Queued),
    body=models.LinkDelivery,
    errors=NOT_ON_EVENT
    | {
        404: "No event has this id, or the person is not linked to it.",
        409: "The event is cancelled, or has no video conferencing.",
        422: BODY_ERRORS[422] + " Also: the person has no phone number (sms) or no email"
        " address (email); error.field is channel.",
    },
)
async def send_link(request: web.Request) -> models.Queued:
    event_id, person_id = path_id(request, "event_id"), path_id(request, "person_id")
    kind = _PERSON_KINDS[request.match_info["kind"]]
    data = await read_body(request, models.LinkDelivery)
    await scheduler_of(request).send_link(
        current_user(request), event_id, kind, person_id, data.channel
    )
    return models.Queued(status="queued", channel=data.channel)
