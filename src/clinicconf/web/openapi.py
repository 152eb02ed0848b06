"""The JSON API's contract: how bodies are written in JSON, and the OpenAPI 3.1
document served at /api/v1/openapi.json.

Each body is declared once, as a dataclass (the domain's own input dataclasses
serve as they are). `decode` reads a parsed JSON object into one, refusing
unknown fields and wrong types; `object_schema` describes the same dataclass in
the document. One declaration for both, so the document and the checks cannot
disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

from ..errors import ValidationError
from ..notify.outbox import Channel
from ..schedule import (
    EventInput,
    EventType,
    EventTypeInput,
    Patient,
    PatientInput,
    Staff,
    StaffInput,
)

T = TypeVar("T")

# Every integer in the API is a row id, and SQLite's integers stop here.
MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True)
class LinkDelivery:
    """The body of POST .../send: how to send a participant their join link."""

    channel: Channel


# --- JSON values <-> Python values ------------------------------------------------------


@dataclass(frozen=True)
class JsonType:
    """How one Python type is written in JSON: its schema, and `convert`, which
    checks a decoded JSON value and returns the Python value (or raises
    ValidationError naming the field)."""

    schema: dict[str, Any]
    convert: Callable[[Any, str], Any]


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError("Must be a string.", field)
    return value


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("Must be true or false.", field)
    return value


def _id(value: Any, field: str) -> int:
    # In Python a bool is an int, but `true` is not an id.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ValidationError("Must be a positive integer.", field)
    return value


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time with its offset, as UTC. A time without an offset is
    refused: it would be read in whatever zone the server guessed."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved to UTC
            pass
    raise ValidationError(
        "Must be an ISO 8601 time with a time zone offset, such as 2025-03-01T09:30:00+01:00"
        " or 2025-03-01T08:30:00Z.",
        field,
    )


_SIMPLE_TYPES: Final[dict[Any, JsonType]] = {
    str: JsonType({"type": "string"}, _string),
    bool: JsonType({"type": "boolean"}, _boolean),
    int: JsonType({"type": "integer", "minimum": 1, "maximum": MAX_ID}, _id),
    datetime: JsonType({"type": "string", "format": "date-time"}, parse_time),
}


def json_type(hint: Any) -> JsonType:
    """The JSON form of a type hint: the simple types above, `X | None`, a list
    of them, or a Literal of strings."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        (present,) = (arg for arg in args if arg is not type(None))
        inner = json_type(present)
        return JsonType(
            {"anyOf": [inner.schema, {"type": "null"}]},
            lambda value, field: None if value is None else inner.convert(value, field),
        )
    if origin is list:
        item = json_type(args[0])

        def convert_list(value: Any, field: str) -> list[Any]:
            if not isinstance(value, list):
                raise ValidationError("Must be a list.", field)
            return [item.convert(element, field) for element in value]

        return JsonType({"type": "array", "items": item.schema}, convert_list)
    if origin is Literal:

        def convert_choice(value: Any, field: str) -> str:
            if not isinstance(value, str) or value not in args:
                raise ValidationError(f"Must be one of: {', '.join(args)}.", field)
            return value

        return JsonType({"type": "string", "enum": list(args)}, convert_choice)
    if hint in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[hint]
    raise TypeError(f"no JSON form for {hint!r}")


@dataclass(frozen=True)
class _Field:
    name: str
    type: JsonType
    required: bool


def _fields(cls: type[Any]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        _Field(
            f.name,
            json_type(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """A decoded JSON object read into the dataclass `cls`. An unknown field is
    refused rather than dropped: a misspelt field would otherwise lose data
    without anyone noticing."""
    fields = _fields(cls)
    known = {f.name for f in fields}
    for name in data:
        if name not in known:
            raise ValidationError(f"Unknown field {name!r}.", name)
    values: dict[str, Any] = {}
    for field in fields:
        if field.name in data:
            values[field.name] = field.type.convert(data[field.name], field.name)
        elif field.required:
            raise ValidationError("This field is required.", field.name)
    return cls(**values)


def object_schema(cls: type[Any], **descriptions: str) -> dict[str, Any]:
    """The JSON Schema of a dataclass's JSON form; `descriptions` notes fields."""
    fields = _fields(cls)
    return {
        "type": "object",
        "properties": {
            f.name: f.type.schema
            | ({"description": descriptions[f.name]} if f.name in descriptions else {})
            for f in fields
        },
        "required": [f.name for f in fields if f.required],
        "additionalProperties": False,
    }


# --- the document -----------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _record(**properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose properties are all always present."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _parameter(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": True,
        "schema": schema,
        "description": description,
    }


_STRING: Final = json_type(str).schema
_ID: Final = json_type(int).schema
_TIME: Final = json_type(datetime).schema

_EVENT_ID: Final = _parameter("event_id", "path", _ID, "The event's id.")
_RECORDING_ID: Final = _parameter("recording_id", "path", _ID, "The recording's id.")
_BYTES: Final = {"type": "string", "format": "binary"}
_TIME_FORMAT: Final = (
    "ISO 8601 with a time zone offset, e.g. 2025-03-01T09:30:00+01:00 or 2025-03-01T08:30:00Z"
)

# What any authenticated route, and any route reading a body, may answer besides its own.
_AUTH_ERRORS: Final = {401: "No valid API token: send Authorization: Bearer <token>."}
# Answers to send again later, after the Retry-After header's seconds.
_TRY_LATER: Final = {
    429: "Too many wrong API tokens from this address lately (code too_many_requests):"
    " every request from it is refused, the right token's too, until Retry-After has passed.",
    503: "The database is held by another process for longer than the server waits (code"
    " busy): nothing was changed; send the request again after Retry-After.",
}
_RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_BODY_ERRORS: Final = {
    400: "The body is not valid JSON, or not a JSON object (code bad_json).",
    413: "The body is larger than 256 KiB (code request_entity_too_large).",
    415: "The body is not sent as application/json (code unsupported_media_type).",
    422: "A field is missing, unknown or wrong; error.field names it.",
}
_ADMIN_ONLY: Final = {403: "Only an administrator's token may do this."}
_NO_EVENT: Final = {404: "No event has this id."}
_NOT_ON_EVENT: Final = {
    403: "Only a token of the event's staff or of an administrator may change the event"
    " or hand out its links."
}
# A recording the token's staff member may not reach is answered as one that does not exist.
_NO_RECORDING: Final = {
    404: "No recording has this id, or it is not this staff member's: only the staff"
    " linked to the event when it was recorded and the administrators reach a recording."
}


def _operation(
    operation_id: str,
    summary: str,
    answer: tuple[int, str, dict[str, Any] | None],
    *,
    body: str | None = None,
    errors: Mapping[int, str] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    media_types: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One operation. `answer` is the success status, its description and schema
    (None: no body), in JSON unless `media_types` name others; `errors` the
    route's own error statuses (authentication's, retrying later's and a body's are
    added here)."""
    status, description, schema = answer
    success: dict[str, Any] = {"description": description}
    if schema is not None:
        success["content"] = (
            {media_type: {"schema": schema} for media_type in media_types}
            if media_types
            else _json(schema)
        )
    responses = {str(status): success}
    all_errors = _AUTH_ERRORS | _TRY_LATER | (_BODY_ERRORS if body else {}) | dict(errors or {})
    for code in sorted(all_errors):
        responses[str(code)] = {"description": all_errors[code], "content": _json(_ref("Error"))}
        if code in _TRY_LATER:
            responses[str(code)]["headers"] = _RETRY_AFTER
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return operation


def _schemas() -> dict[str, Any]:
    person = _record(id=_ID, name=_STRING)
    event = _record(
        id=_ID,
        title=_STRING,
        event_type=_ref("EventType"),
        start=_TIME | {"description": "UTC."},
        end=_TIME | {"description": "UTC."},
        status={"type": "string", "enum": ["scheduled", "cancelled"]},
        record_patient_id=json_type(int | None).schema,
        staff={"type": "array", "items": _ref("Person")},
        patients={"type": "array", "items": _ref("Person")},
    )
    names = {"type": "array", "items": _STRING}
    invitations = _record(emailed=names, not_emailed=names) | {
        "description": "Who is sent an invitation email, and who has no email address."
    }
    created_event = event | {
        "properties": event["properties"] | {"invitations": invitations},
        "required": [*event["required"], "invitations"],
    }
    person_link = _record(id=_ID, name=_STRING, url=_STRING | {"format": "uri"})
    count = {"type": "integer", "minimum": 0}
    recording = _record(
        id=_ID,
        event=_record(id=_ID, title=_STRING),
        patient_ids={"type": "array", "items": _ID}
        | {
            "description": "The patient records it is filed in: the patients present while"
            " it recorded (and the record a Public Conference is tied to). A patient linked"
            " to the event who was not present does not have it."
        },
        started_at=_TIME | {"description": "UTC."},
        ended_at=json_type(datetime | None).schema
        | {"description": "UTC; null while it is recorded, or if the server stopped."},
        state={"type": "string", "enum": ["recording", "composing", "ready", "failed"]},
        interrupted={"type": "boolean", "description": "It stopped before the conference's end."},
        interruption=json_type(str | None).schema
        | {"description": "Why it stopped early, when the server could say (not after a crash)."},
        failure=json_type(str | None).schema | {"description": "Why it failed."},
        progress=count | {"maximum": 100, "description": "Composing, in whole per cent."},
        duration_ms={"anyOf": [count, {"type": "null"}]},
        size_bytes=count
        | {"description": "The composed file's size; until there is one, its tracks'."},
        present={
            "type": "array",
            "items": _record(participant=_STRING, name=_STRING, kind=_STRING),
            "description": "Who took part while it was recorded; participant is the id"
            " that names their track files.",
        },
    )
    recording_file = _record(
        name=_STRING,
        kind={"type": "string", "enum": ["composed", "audio", "video"]},
        participant=json_type(str | None).schema
        | {"description": "A track's participant id in the conference; null if composed."},
        size_bytes=count,
        url=_STRING | {"format": "uri"},
    )
    recording_detail = recording | {
        "properties": recording["properties"]
        | {"files": {"type": "array", "items": _ref("RecordingFile")}},
        "required": [*recording["required"], "files"],
    }
    phone = "E.164 (+12025550123), or a national number of the server's phone region."
    return {
        "Error": _record(
            error=_record(
                code=_STRING | {"description": "Stable, for programs: e.g. invalid, conflict."},
                message=_STRING | {"description": "For people."},
                field=json_type(str | None).schema
                | {"description": "The body field or query parameter at fault, if one is."},
            )
        ),
        "StaffInput": object_schema(
            StaffInput,
            phone=phone,
            is_admin="An administrator. The new staff member can sign in to the pages"
            " once a password is set for them (`python -m clinicconf set-password`).",
        ),
        "PatientInput": object_schema(PatientInput, phone=phone),
        "EventTypeInput": object_schema(
            EventTypeInput,
            public_conference="Adds a shared public link; needs video_conferencing.",
            colour="#rrggbb",
        ),
        "EventInput": object_schema(
            EventInput,
            start=_TIME_FORMAT,
            end=_TIME_FORMAT + "; after start, at most 24 hours later",
            record_patient_id="Only for a Public Conference: the patient record it belongs to.",
        ),
        "LinkDelivery": object_schema(LinkDelivery),
        "Staff": object_schema(Staff),
        "Patient": object_schema(Patient),
        "EventType": object_schema(EventType),
        "Person": person,
        "Event": event,
        "CreatedEvent": created_event,
        "PersonLink": person_link,
        "Links": _record(
            staff={"type": "array", "items": _ref("PersonLink")},
            patients={"type": "array", "items": _ref("PersonLink")},
            public=json_type(str | None).schema
            | {"description": "The shared link of a Public Conference; null for other events."},
        ),
        "Recording": recording,
        "RecordingFile": recording_file,
        "RecordingDetail": recording_detail,
        "PatientRecordings": _record(
            recordings=_list_of("Recording"),
            not_shown=count
            | {"description": "How many other recordings of this patient it may not reach."},
        ),
        "Queued": _record(
            status={"type": "string", "enum": ["queued"]},
            channel=json_type(Channel).schema,
        ),
    }


def _paths() -> dict[str, Any]:
    window = {
        "from": "The start of the time range: " + _TIME_FORMAT + " (write + as %2B).",
        "to": "The end of the time range, after from and at most 366 days later.",
    }
    return {
        "/openapi.json": {
            "get": {
                "operationId": "openapi_document",
                "summary": "This document. Needs no token.",
                "security": [],
                "responses": {
                    "200": {"description": "This document.", "content": _json({"type": "object"})}
                },
            }
        },
        "/staff": {
            "get": _operation(
                "list_staff",
                "All staff members, by name.",
                (200, "The staff members.", _list_of("Staff")),
            ),
            "post": _operation(
                "create_staff",
                "Add a staff member (administrators only).",
                (201, "The new staff member.", _ref("Staff")),
                body="StaffInput",
                errors=_ADMIN_ONLY | {409: "A staff member has this email address already."},
            ),
        },
        "/patients": {
            "get": _operation(
                "list_patients",
                "All patients, by name.",
                (200, "The patients.", _list_of("Patient")),
            ),
            "post": _operation(
                "create_patient",
                "Add a patient.",
                (201, "The new patient.", _ref("Patient")),
                body="PatientInput",
                errors={409: "A patient has this record number already."},
            ),
        },
        "/event-types": {
            "get": _operation(
                "list_event_types",
                "All event types, by name.",
                (200, "The event types.", _list_of("EventType")),
            ),
            "post": _operation(
                "create_event_type",
                "Add an event type (administrators only).",
                (201, "The new event type.", _ref("EventType")),
                body="EventTypeInput",
                errors=_ADMIN_ONLY
                | {
                    409: "An event type has this name already.",
                    422: _BODY_ERRORS[422]
                    + " public_conference is refused without video_conferencing.",
                },
            ),
        },
        "/events": {
            "get": _operation(
                "list_events",
                "The events overlapping a time range, cancelled ones included, by start.",
                (200, "The events.", _list_of("Event")),
                parameters=[
                    _parameter(name, "query", _TIME, description)
                    for name, description in window.items()
                ],
                errors={422: "from or to is missing or wrong; error.field names it."},
            ),
            "post": _operation(
                "create_event",
                "Schedule an event. Every linked person with an email address is sent an"
                " invitation with their own join link.",
                (201, "The new event.", _ref("CreatedEvent")),
                body="EventInput",
                errors={
                    422: _BODY_ERRORS[422] + " Also: an unknown event type, staff member or"
                    " patient id, an end not after the start."
                },
            ),
        },
        "/events/{event_id}": {
            "get": _operation(
                "get_event",
                "One event.",
                (200, "The event.", _ref("Event")),
                parameters=[_EVENT_ID],
                errors=_NO_EVENT,
            )
        },
        "/events/{event_id}/links": {
            "get": _operation(
                "get_links",
                "Every join link of an event (empty lists for an event without video"
                " conferencing). Handing them out is audited.",
                (200, "The links.", _ref("Links")),
                parameters=[_EVENT_ID],
                errors=_NO_EVENT | _NOT_ON_EVENT,
            )
        },
        "/events/{event_id}/cancel": {
            "post": _operation(
                "cancel_event",
                "Cancel an event: its links stop working and its participants are told.",
                (200, "The cancelled event.", _ref("Event")),
                parameters=[_EVENT_ID],
                errors=_NO_EVENT | _NOT_ON_EVENT | {409: "The event is cancelled already."},
            )
        },
        "/events/{event_id}/participants/{kind}/{person_id}/send": {
            "post": _operation(
                "send_link",
                "Send a participant their join link by SMS or email. The message is queued"
                " and delivered in the background, with retries.",
                (202, "The message is queued.", _ref("Queued")),
                body="LinkDelivery",
                parameters=[
                    _EVENT_ID,
                    _parameter(
                        "kind",
                        "path",
                        {"type": "string", "enum": ["staff", "patients"]},
                        "Which list the person is in.",
                    ),
                    _parameter("person_id", "path", _ID, "The staff member's or patient's id."),
                ],
                errors=_NOT_ON_EVENT
                | {
                    404: "No event has this id, or the person is not linked to it.",
                    409: "The event is cancelled, or has no video conferencing.",
                    422: _BODY_ERRORS[422] + " Also: the person has no phone number (sms)"
                    " or no email address (email); error.field is channel.",
                },
            )
        },
        "/patients/{patient_id}/recordings": {
            "get": _operation(
                "list_patient_recordings",
                "The recordings in a patient's record that this staff member may reach"
                " (as the event's staff, or an administrator), newest first.",
                (200, "The recordings, and how many others there are.", _ref("PatientRecordings")),
                parameters=[_parameter("patient_id", "path", _ID, "The patient's id.")],
                errors={404: "No patient has this id."},
            )
        },
        "/recordings/{recording_id}": {
            "get": _operation(
                "get_recording",
                "One recording, with its files: the composed one once it is ready, and each"
                " participant's audio and video track.",
                (200, "The recording.", _ref("RecordingDetail")),
                parameters=[_RECORDING_ID],
                errors=_NO_RECORDING,
            ),
            "delete": _operation(
                "delete_recording",
                "Delete a recording: it leaves every patient record and its files are removed"
                " from the server. Audited.",
                (204, "Deleted.", None),
                parameters=[_RECORDING_ID],
                errors=_NO_RECORDING
                | {409: "It is still being recorded or composed: try again once it is not."},
            ),
        },
        "/recordings/{recording_id}/files/{name}": {
            "get": _operation(
                "get_recording_file",
                "Download one of a recording's files (the name from its files list), as an"
                " attachment. Range requests are answered with 206 and that part. Audited.",
                (200, "The file: WebM video, or WebM audio for an audio track.", _BYTES),
                parameters=[
                    _RECORDING_ID,
                    _parameter("name", "path", _STRING, "The file's name, from its files list."),
                ],
                errors={404: _NO_RECORDING[404] + " Or it has no file of this name."},
                media_types=("video/webm", "audio/webm"),
            )
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clinicconf API",
            "version": "1",
            "description": "Staff, patients, event types, events, their join links and"
            " their recordings, for the clinic's EHR and scripts. Errors are"
            ' {"error": {"code", "message", "field"}}.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `python -m clinicconf create-api-token`;"
                    " it acts as that staff member.",
                }
            },
            "schemas": _schemas(),
        },
        "paths": _paths(),
    }
