"""The JSON API under /api/v1, for the clinic's EHR and scripts.

The middleware has already checked the bearer token (web/middleware.py) and maps
every domain error to {"error": {...}}. Views here only read and check the
request's shape (web/openapi.py declares it) and call the Scheduler, which
applies the rules and writes the audit log.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from aiohttp import web

from ...errors import BadRequest, ClinicConfError, NotFound, ValidationError
from ...schedule import (
    Event,
    EventInput,
    EventTypeInput,
    PatientInput,
    PersonKind,
    StaffInput,
)
from .. import openapi
from ..middleware import current_user, scheduler_of

T = TypeVar("T")

routes = web.RouteTableDef()

PREFIX: Final = "/api/v1"
# GET /events answers at most this span at once.
MAX_RANGE: Final = timedelta(days=366)
_PATH_ID: Final = re.compile(r"[1-9][0-9]{0,18}")
# The URL names the lists as the event representation does; the domain in the singular.
_PERSON_KINDS: Final[dict[str, PersonKind]] = {"staff": "staff", "patients": "patient"}


class MalformedJson(BadRequest):
    code = "bad_json"


class UnsupportedMediaType(ClinicConfError):
    status = 415
    code = "unsupported_media_type"


async def read_body(request: web.Request, cls: type[T]) -> T:
    """The request's JSON object, read into the dataclass `cls` (see openapi.decode).
    A body over the app's client_max_size is refused by aiohttp with a 413."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:  # ValueError includes bad UTF-8
        raise MalformedJson("The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise MalformedJson("The body must be a JSON object.")
    return openapi.decode(cls, data)


def path_id(request: web.Request, name: str) -> int:
    """A row id from the URL. Anything but a positive integer names nothing: 404."""
    text = request.match_info[name]
    if _PATH_ID.fullmatch(text) and int(text) <= openapi.MAX_ID:
        return int(text)
    raise NotFound(f"No such {name.removesuffix('_id')}.")


def query_time(request: web.Request, name: str) -> datetime:
    value = request.query.get(name)
    if value is None:
        raise ValidationError("This query parameter is required.", name)
    return openapi.parse_time(value, name)


def time_json(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "title": event.title,
        "event_type": dataclasses.asdict(event.event_type),
        "start": time_json(event.start),
        "end": time_json(event.end),
        "status": event.status,
        "record_patient_id": event.record_patient_id,
        # Names only: the event's other participants' contact details are not its business.
        "staff": [{"id": s.id, "name": s.name} for s in event.staff],
        "patients": [{"id": p.id, "name": p.name} for p in event.patients],
    }


def _created(obj: Any) -> web.Response:
    return web.json_response(dataclasses.asdict(obj), status=201)


@routes.get(PREFIX + "/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


@routes.get(PREFIX + "/staff")
async def list_staff(request: web.Request) -> web.Response:
    return web.json_response(
        [dataclasses.asdict(s) for s in await scheduler_of(request).list_staff()]
    )


@routes.post(PREFIX + "/staff")
async def create_staff(request: web.Request) -> web.Response:
    data = await read_body(request, StaffInput)
    return _created(await scheduler_of(request).create_staff(current_user(request), data))


@routes.get(PREFIX + "/patients")
async def list_patients(request: web.Request) -> web.Response:
    patients = await scheduler_of(request).list_patients()
    return web.json_response([dataclasses.asdict(p) for p in patients])


@routes.post(PREFIX + "/patients")
async def create_patient(request: web.Request) -> web.Response:
    data = await read_body(request, PatientInput)
    return _created(await scheduler_of(request).create_patient(current_user(request), data))


@routes.get(PREFIX + "/event-types")
async def list_event_types(request: web.Request) -> web.Response:
    event_types = await scheduler_of(request).list_event_types()
    return web.json_response([dataclasses.asdict(t) for t in event_types])


@routes.post(PREFIX + "/event-types")
async def create_event_type(request: web.Request) -> web.Response:
    data = await read_body(request, EventTypeInput)
    return _created(await scheduler_of(request).create_event_type(current_user(request), data))


@routes.get(PREFIX + "/events")
async def list_events(request: web.Request) -> web.Response:
    start, end = query_time(request, "from"), query_time(request, "to")
    if end <= start:
        raise ValidationError("Must be after from.", "to")
    if end - start > MAX_RANGE:
        raise ValidationError(f"At most {MAX_RANGE.days} days after from.", "to")
    events = await scheduler_of(request).events_between(start, end)
    return web.json_response([event_json(e) for e in events])


@routes.post(PREFIX + "/events")
async def create_event(request: web.Request) -> web.Response:
    data = await read_body(request, EventInput)
    saved = await scheduler_of(request).create_event(current_user(request), data)
    invitations = {"emailed": saved.emailed, "not_emailed": saved.not_emailed}
    return web.json_response(event_json(saved.event) | {"invitations": invitations}, status=201)


@routes.get(PREFIX + "/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    event = await scheduler_of(request).get_event(path_id(request, "event_id"))
    return web.json_response(event_json(event))


@routes.get(PREFIX + "/events/{event_id}/links")
async def get_links(request: web.Request) -> web.Response:
    links = await scheduler_of(request).all_links(
        current_user(request), path_id(request, "event_id")
    )
    return web.json_response(links)


@routes.post(PREFIX + "/events/{event_id}/cancel")
async def cancel_event(request: web.Request) -> web.Response:
    event_id = path_id(request, "event_id")
    event = await scheduler_of(request).cancel_event(current_user(request), event_id)
    return web.json_response(event_json(event))


@routes.post(PREFIX + "/events/{event_id}/participants/{kind:staff|patients}/{person_id}/send")
async def send_link(request: web.Request) -> web.Response:
    event_id, person_id = path_id(request, "event_id"), path_id(request, "person_id")
    kind = _PERSON_KINDS[request.match_info["kind"]]
    data = await read_body(request, openapi.LinkDelivery)
    await scheduler_of(request).send_link(
        current_user(request), event_id, kind, person_id, data.channel
    )
    return web.json_response({"status": "queued", "channel": data.channel}, status=202)
