"""The JSON API's routes under /api/v1, each declared once beside its view with what
the OpenAPI document says of it (web/openapi.py builds the document from these
declarations, and a view's result is written through the model its declaration
names), and the readers of what a request brings: its body, its path ids, its query.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ..errors import NotFound
from .api_models import MAX_ID, Body, Reply, validated
from .protocol import MalformedJson, UnsupportedMediaType

B = TypeVar("B", bound=Body)
M = TypeVar("M", bound=BaseModel)
# A view answers what its route's Answer declares, or a response of its own (a file).
View = Callable[[web.Request], Awaitable[Any]]

PREFIX: Final = "/api/v1"
_PATH_ID: Final = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class Answer:
    """A route's success: its status, what it means, and its body: a model (a list of
    them if `many`), a JSON Schema of its own, or None for no body. A body that is not
    JSON is in one of `media_types`."""

    status: int
    description: str
    shape: type[Reply] | dict[str, Any] | None = None
    many: bool = False
    media_types: tuple[str, ...] = ()

    def written(self, result: Any) -> web.StreamResponse:
        """A view's result as this answer: read by the model (from the core's
        dataclasses, or the model itself) and written in JSON."""
        if isinstance(result, web.StreamResponse):
            return result
        if self.shape is None:
            return web.Response(status=self.status)
        if isinstance(self.shape, dict):
            return web.json_response(result, status=self.status)
        model = self.shape

        def json_of(item: Any) -> Any:
            return model.model_validate(item).model_dump(mode="json")

        data = [json_of(item) for item in result] if self.many else json_of(result)
        return web.json_response(data, status=self.status)


@dataclass(frozen=True)
class Operation:
    """One API route as the document describes it."""

    method: str  # lower case, as OpenAPI writes it
    path: str  # under PREFIX, as aiohttp declares it: a parameter may carry a pattern
    operation_id: str  # the view's name
    summary: str
    answer: Answer
    body: type[Body] | None = None
    query: type[BaseModel] | None = None
    # The route's own refusals; those of any route, or of any body, are added to them.
    errors: Mapping[int, str] = field(default_factory=dict)
    public: bool = False  # needs no token


class ApiRoutes:
    """API routes added to a view module's aiohttp route table, each with its Operation."""

    def __init__(self, routes: web.RouteTableDef) -> None:
        self._routes = routes
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        summary: str,
        answer: Answer,
        *,
        body: type[Body] | None = None,
        query: type[BaseModel] | None = None,
        errors: Mapping[int, str] | None = None,
        public: bool = False,
    ) -> Callable[[View], View]:
        def register(view: View) -> View:
            @functools.wraps(view)
            async def handler(request: web.Request) -> web.StreamResponse:
                return answer.written(await view(request))

            self._routes.route(method, PREFIX + path)(handler)
            self.operations.append(
                Operation(
                    method.lower(),
                    path,
                    view.__name__,
                    summary,
                    answer,
                    body,
                    query,
                    errors or {},
                    public,
                )
            )
            return view

        return register


async def read_body(request: web.Request, model: type[B]) -> B:
    """The request's JSON object, read by `model` (api_models.validated). A body
    over the app's client_max_size is refused by aiohttp with a 413."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:  # ValueError includes bad UTF-8
        raise MalformedJson("The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise MalformedJson("The body must be a JSON object.")
    return validated(model, data)


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string read by `model`; of a repeated parameter, the first."""
    return validated(model, {name: request.query[name] for name in request.query})


def path_id(request: web.Request, name: str) -> int:
    """A row id from the URL. Anything but a positive integer names nothing: 404."""
    text = request.match_info[name]
    if _PATH_ID.fullmatch(text) and int(text) <= MAX_ID:
        return int(text)
    raise NotFound(f"No such {name.removesuffix('_id')}.")
