"""The OpenAPI 3.1 document served at /api/v1/openapi.json, built from the routes'
declarations (web/api_routes.py, beside each view) and the JSON Schemas of their
models (web/api_models.py): nothing here repeats a route or a field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema

from .api_models import Error, Id
from .api_routes import PREFIX, Answer, Operation

_REF: Final = "#/components/schemas/{model}"
_ID: Final = TypeAdapter(Id).json_schema()
# A path's parameters, by name: an id, or one of the choices of its pattern.
_PATH_PARAMETERS: Final = {
    "event_id": "The event's id.",
    "recording_id": "The recording's id.",
    "patient_id": "The patient's id.",
    "person_id": "The staff member's or patient's id.",
    "kind": "Which list the person is in.",
    "name": "The file's name, from its files list.",
}
_PARAMETER: Final = re.compile(r"\{(\w+)(?::([^}]*))?\}")

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
BODY_ERRORS: Final = {
    400: "The body is not valid JSON, or not a JSON object (code bad_json).",
    413: "The body is larger than 256 KiB (code request_entity_too_large).",
    415: "The body is not sent as application/json (code unsupported_media_type).",
    422: "A field is missing, unknown or wrong; error.field names it.",
}


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every field: the name says it."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer_schema(answer: Answer) -> dict[str, Any] | None:
    if answer.shape is None or isinstance(answer.shape, dict):
        return answer.shape
    schema = _ref(answer.shape)
    return {"type": "array", "items": schema} if answer.many else schema


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _ID
            if name.endswith("_id")
            else {"type": "string"} | ({"enum": pattern.split("|")} if pattern else {}),
            "description": _PATH_PARAMETERS[name],
        }
        for name, pattern in _PARAMETER.findall(operation.path)
    ]
    if operation.query is not None:
        query = operation.query.model_json_schema(schema_generator=_Schemas)
        for name, schema in query["properties"].items():
            described = dict(schema)
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in query.get("required", []),
                    "description": described.pop("description"),
                    "schema": described,
                }
            )
    return parameters


def _operation(operation: Operation) -> dict[str, Any]:
    answer = operation.answer
    success: dict[str, Any] = {"description": answer.description}
    if (schema := _answer_schema(answer)) is not None:
        media_types = answer.media_types or ("application/json",)
        success["content"] = {media_type: {"schema": schema} for media_type in media_types}
    responses = {str(answer.status): success}
    errors = {} if operation.public else _AUTH_ERRORS | _TRY_LATER
    errors |= (BODY_ERRORS if operation.body else {}) | dict(operation.errors)
    for code in sorted(errors):
        responses[str(code)] = {"description": errors[code], "content": _json(_ref(Error))}
        if code in _TRY_LATER:
            responses[str(code)]["headers"] = _RETRY_AFTER
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "responses": responses,
    }
    if operation.public:
        described["security"] = []
    if parameters := _parameters(operation):
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": _json(_ref(operation.body))}
    return described


def _schemas(operations: Sequence[Operation]) -> dict[str, Any]:
    """Every model the operations name, and those their models name: bodies as they
    are read, answers as they are written."""
    models: dict[type[BaseModel], JsonSchemaMode] = {Error: "serialization"}
    for operation in operations:
        if operation.body is not None:
            models[operation.body] = "validation"
        if isinstance(operation.answer.shape, type):
            models[operation.answer.shape] = "serialization"
    _, schemas = models_json_schema(
        list(models.items()), ref_template=_REF, schema_generator=_Schemas
    )
    return dict(schemas["$defs"])


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        path = _PARAMETER.sub(lambda match: "{" + match[1] + "}", operation.path)
        paths.setdefault(path, {})[operation.method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clinicconf API",
            "version": "1",
            "description": "Staff, patients, event types, events, their join links and"
            " their recordings, for the clinic's EHR and scripts. Errors are"
            ' {"error": {"code", "message", "field"}}.',
        },
        "servers": [{"url": PREFIX}],
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
            "schemas": _schemas(operations),
        },
        "paths": paths,
    }
