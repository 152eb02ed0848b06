"""Calling the JSON API as an account, and checking answers and bodies against the
OpenAPI document."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf.web.views.api import document

from .accounts import Account
from .servers import Client


async def api(
    client: TestClient[web.Request, web.Application],
    account: Account,
    method: str,
    path: str,
    json: Any = None,
) -> tuple[int, Any]:
    """Call the JSON API as `account`; returns the status and the decoded body."""
    async with client.request(method, "/api/v1" + path, json=json, headers=account.auth) as resp:
        return resp.status, await resp.json()


def conforms(value: Any, schema: dict[str, Any], where: str = "body") -> None:
    """Assert that `value` fits `schema` from the OpenAPI document (the subset of
    JSON Schema the document uses)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document()["components"]["schemas"][name]
    if "anyOf" in schema:
        failures = []
        for option in schema["anyOf"]:
            try:
                conforms(value, option, where)
                return
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{where}: fits no option: {failures}")
    python_types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "boolean": bool,
        "null": type(None),
    }
    kind = schema["type"]
    assert isinstance(value, python_types[kind]), f"{where}: {value!r} is not {kind}"
    assert kind == "boolean" or not isinstance(value, bool), f"{where}: {value!r} is a boolean"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value!r} below the minimum"
    if kind == "array":
        for i, item in enumerate(value):
            conforms(item, schema["items"], f"{where}[{i}]")
    if kind == "object" and "properties" in schema:
        assert set(schema["required"]) <= set(value), f"{where}: missing keys"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(schema["properties"]), f"{where}: unknown keys"
        for key, item in value.items():
            conforms(item, schema["properties"][key], f"{where}.{key}")


def json_schema(content: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = content["content"]["application/json"]["schema"]
    return schema


def operation(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["paths"][path][method.lower()]
    return found


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    return json_schema(operation(method, path)["responses"][str(status)])


async def call(
    client: Client,
    account: Account,
    method: str,
    template: str,
    body: Any = None,
    expect: int = 200,
    **path_params: Any,
) -> Any:
    """Call a route as the OpenAPI document names it and assert the status. The
    answer must fit the document's schema for that status, and a body that was
    accepted the document's schema for the request."""
    status, answer = await api(client, account, method, template.format(**path_params), json=body)
    assert status == expect, answer
    path = template.partition("?")[0]
    conforms(answer, response_schema(method, path, status))
    if body is not None and status < 300:
        conforms(body, json_schema(operation(method, path)["requestBody"]), "request")
    return answer
