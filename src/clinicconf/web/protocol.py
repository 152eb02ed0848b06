"""The landing page's websocket protocol (docs/lobby-protocol.md) at the web edge:
every message a page may send, declared and validated with pydantic; the answers
to them (what else the server sends is declared in clinicconf/page_messages.py); the
close codes that tell a page why its socket closed; and how a domain error
(errors.py) is answered, over HTTP and on the socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

import pydantic
from aiohttp import WSCloseCode
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import names
from ..conference.identity import Closing
from ..errors import (
    AuthenticationRequired,
    BadRequest,
    ClinicConfError,
    Conflict,
    NotFound,
    PermissionDenied,
    Refused,
    ServerBusy,
    ValidationError,
)
from ..links import JoinState
from ..page_messages import Error, Result
from ..throttle import TooManyAttempts

PROTOCOL_VERSION: Final = 1

# --- close codes -----------------------------------------------------------------------

# The one table from the conference's reasons to the codes a page is told
# (web/static/lobby.js explains those a person must read; tests/conference/lobby/test_protocol.py
# holds the two together).
CLOSE_CODES: Final[dict[Closing, int]] = {
    Closing.EVENT_CHANGED: 4000,
    Closing.CANCELLED: 4410,
    Closing.ENDED: 4411,
    Closing.FULL: 4429,
    Closing.WAITING_ROOM_FULL: 4429,
    Closing.TOO_MANY_PAGES: 4428,
    Closing.LOCKED: 4423,
    Closing.TURNED_AWAY: 4431,
    Closing.REMOVED: 4430,
    Closing.SHUTTING_DOWN: WSCloseCode.GOING_AWAY,
}
# A link that opens nothing, or cannot be used now (views/join.py's states).
LINK_CLOSE_CODES: Final[dict[JoinState | Literal["unknown"], int]] = {
    "unknown": 4404,
    "early": 4403,
    "cancelled": CLOSE_CODES[Closing.CANCELLED],
    "ended": CLOSE_CODES[Closing.ENDED],
}
# Sent as the close frame's text: what a developer reads in the browser's console.
_CLOSE_TEXTS: Final[dict[Closing, str]] = {
    Closing.EVENT_CHANGED: "event changed",
    Closing.WAITING_ROOM_FULL: "waiting room full",
    Closing.TOO_MANY_PAGES: "too many pages",
    Closing.TURNED_AWAY: "turned away",
    Closing.SHUTTING_DOWN: "server shutting down",
}


def close_code(why: Closing) -> int:
    return CLOSE_CODES[why]


def close_text(why: Closing) -> str:
    return _CLOSE_TEXTS.get(why, why.value)


# --- what a page sends ---------------------------------------------------------------


class ClientMessage(BaseModel):
    """What every message from a page carries. Strict: a field is of its own JSON
    type (no "true" for true, no 1 for true); fields not declared are ignored.
    A description, where a field has one, is what a page is told when it is wrong."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    v: Literal[1] = Field(description=f"{PROTOCOL_VERSION}, this protocol's version")
    id: int = Field(description="a number larger than the previous one")


ClientKey = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{16,64}$",
        description="16 to 64 letters, digits, - or _",
    ),
]
# Counted once cleaned (names.py): what others will see of it.
GuestName = Annotated[
    str,
    AfterValidator(names.clean),
    Field(
        min_length=1,
        max_length=names.MAX_DISPLAY_NAME,
        description=f"1 to {names.MAX_DISPLAY_NAME} visible characters",
    ),
]


class Hello(ClientMessage):
    """The first message: a personal link's holder is known from the link."""

    type: Literal["hello"]
    client_key: ClientKey


class GuestHello(Hello):
    """A public link's guest names themselves."""

    display_name: GuestName


class SetOptions(ClientMessage):
    type: Literal["set_options"]
    moderator: bool
    recording: bool


class SetAccess(ClientMessage):
    type: Literal["set_access"]
    locked: bool
    waiting_room: bool


class LetIn(ClientMessage):
    type: Literal["let_in"]
    guest: str


class LetInAll(ClientMessage):
    type: Literal["let_in_all"]


class TurnAway(ClientMessage):
    type: Literal["turn_away"]
    guest: str


class TurnAwayAll(ClientMessage):
    type: Literal["turn_away_all"]


class Remove(ClientMessage):
    type: Literal["remove"]
    participant: str


class Start(ClientMessage):
    type: Literal["start"]


class SetShown(ClientMessage):
    type: Literal["set_shown"]
    participant: str
    shown: bool


class SetPermission(ClientMessage):
    type: Literal["set_permission"]
    participant: str
    # Any text: the conference refuses one it does not know as `bad_permission`.
    permission: str


class End(ClientMessage):
    type: Literal["end"]


class Reopen(ClientMessage):
    type: Literal["reopen"]


class JoinMedia(ClientMessage):
    type: Literal["join_media"]


class Answer(ClientMessage):
    type: Literal["answer"]
    connection: str
    sdp: str


class Leave(ClientMessage):
    type: Literal["leave"]


class Ping(ClientMessage):
    type: Literal["ping"]


def message_type(model: type[ClientMessage]) -> str:
    """The `type` a model declares."""
    (name,) = get_args(model.model_fields["type"].annotation)
    return str(name)


def _by_type(*models: type[ClientMessage]) -> dict[str, type[ClientMessage]]:
    return {message_type(model): model for model in models}


# What the holder of a personal link may send; a guest on the public link says a name.
LINKED_MESSAGES: Final = _by_type(
    Hello, SetOptions, SetAccess, LetIn, LetInAll, TurnAway, TurnAwayAll, Remove, Start,
    SetShown, SetPermission, End, Reopen, JoinMedia, Answer, Leave, Ping,
)  # fmt: skip
GUEST_MESSAGES: Final = {**LINKED_MESSAGES, **_by_type(GuestHello)}


class ProtocolError(Exception):
    """A message the socket answers with an error `code`; `close`: and then closes."""

    def __init__(self, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close


def read_envelope(message: object) -> ClientMessage:
    """Its version and id, read before anything else: from here on, an error answers
    that id."""
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", 'Messages are JSON objects with "v": 1.')
    return _validated(ClientMessage, message)


def read_message(message: dict[str, Any], *, guest: bool) -> ClientMessage:
    """The typed message, by its `type`."""
    message_type = message.get("type")
    models = GUEST_MESSAGES if guest else LINKED_MESSAGES
    model = models.get(message_type) if isinstance(message_type, str) else None
    if model is None:
        raise ProtocolError("unknown_type", "Unknown message type.")
    return _validated(model, message)


def _validated(model: type[ClientMessage], message: dict[str, Any]) -> ClientMessage:
    try:
        return model.model_validate(message)
    except pydantic.ValidationError as exc:
        raise ProtocolError("bad_message", _first_problem(model, exc)) from None


def _first_problem(model: type[ClientMessage], exc: pydantic.ValidationError) -> str:
    """In words a person reads: the field, and what it should be."""
    problem = exc.errors(include_url=False)[0]
    name = str(problem["loc"][0]) if problem["loc"] else "message"
    field = model.model_fields.get(name)
    said = field.description if field is not None and field.description else problem["msg"]
    return f"{name}: {said}."


# --- answers ---------------------------------------------------------------------------


def result(message_id: int, server_time: int) -> Result:
    return {"type": "result", "id": message_id, "server_time": server_time}


def error(message_id: int | None, code: str, text: str) -> Error:
    return {"type": "error", "id": message_id, "code": code, "message": text}


@dataclass(frozen=True)
class ErrorAnswer:
    """A domain error as the edges answer it: over HTTP with `status` and the API's
    `code`; on the websocket with `socket_code` (docs/lobby-protocol.md)."""

    status: int
    code: str
    socket_code: str
    message: str
    field: str | None


class MalformedJson(BadRequest):
    """A request's body is not JSON."""


class UnsupportedMediaType(ClinicConfError):
    """A request's body is not sent as application/json."""


# Each error's HTTP status and the API's code for it; an error not listed is answered
# as its nearest listed ancestor is.
_HTTP_ANSWERS: Final[dict[type[ClinicConfError], tuple[int, str]]] = {
    ClinicConfError: (400, "bad_request"),
    MalformedJson: (400, "bad_json"),
    AuthenticationRequired: (401, "unauthenticated"),
    PermissionDenied: (403, "forbidden"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    ValidationError: (422, "invalid"),
    TooManyAttempts: (429, "too_many_requests"),
    ServerBusy: (503, "busy"),
}


def error_answer(exc: ClinicConfError) -> ErrorAnswer:
    status, code = next(_HTTP_ANSWERS[kind] for kind in type(exc).__mro__ if kind in _HTTP_ANSWERS)
    if isinstance(exc, Refused):
        socket_code = exc.reason  # the conference's own word for what it cannot do
    elif isinstance(exc, PermissionDenied):
        socket_code = "not_host"  # on the socket, only a host's intents are refused so
    else:
        socket_code = code
    return ErrorAnswer(status, code, socket_code, exc.message, exc.field)
