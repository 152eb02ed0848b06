"""The landing page's websocket (docs/lobby-protocol.md): `/j/<token>/ws` and
`/p/<token>/ws`, for the lobby and then the conference's signalling. Each message
type has a handler and the fields it takes; what a message may change is decided by
the Conference, never here."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from ... import keys, names
from ...conference.admission import KeptOut
from ...conference.coordinator import Conference
from ...conference.identity import Closing, Identity, ParticipantKind
from ...conference.visibility import now_ms
from ...errors import PermissionDenied, Refused, ServerBusy
from ..close_codes import close_code, close_text
from ..middleware import client_address
from ..socket import PROTOCOL_VERSION, PageConnection
from .join import MAX_DISPLAY_NAME, open_join_link

routes = web.RouteTableDef()

# An SDP answer for a full conference fits; a lobby message is far smaller.
MAX_MESSAGE_BYTES: Final = 64 * 1024
HELLO_TIMEOUT_SECONDS: Final = 10.0
# A host's page on an ended conference may ask to open it again (`reopen`) first; one
# that does not hears soon that it has ended, as everyone else's does at once.
REOPEN_WAIT_SECONDS: Final = 2.0
# How a page is told, by close code, that its link cannot be used now.
_CLOSED_LINK: Final = {"unknown": 4404, "early": 4403, "cancelled": 4410, "ended": 4411}
# More than this many messages in the window is no person clicking: the page is closed.
FLOOD_MESSAGES: Final = 20
FLOOD_WINDOW_SECONDS: Final = 5.0
_CLIENT_KEY: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close


@dataclass(eq=False)  # one per socket: compared and hashed by identity
class Session:
    """One page's socket: who it speaks for once it has said hello."""

    ws: web.WebSocketResponse
    conference: Conference
    # Known from the link for a personal link; a guest names themselves in hello.
    person: Identity | None
    public: bool
    address: str | None
    connection: PageConnection | None = None
    last_id: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=FLOOD_MESSAGES))

    def joined(self) -> PageConnection:
        if self.connection is None:
            raise ProtocolError("not_ready", "Say hello first.")
        return self.connection

    async def close(self, why: Closing) -> None:
        if self.connection is not None:
            await self.connection.close(why)
        else:
            await _close(self.ws, why)


Handler = Callable[[Session, dict[str, Any]], Awaitable[None]]
# Each message type: its handler and its fields with their types.
_HANDLERS: dict[str, tuple[Handler, dict[str, type]]] = {}
# A host's change is answered once written (conference_state.py): a server killed the
# moment after still takes it up again.
_SAVED_BEFORE_ANSWERED: Final = frozenset(
    {"set_options", "set_access", "let_in", "let_in_all", "turn_away", "turn_away_all",
     "remove", "start", "set_shown", "set_permission", "end", "reopen"}
)  # fmt: skip


def handles(message_type: str, **fields: type) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[message_type] = (handler, fields)
        return handler

    return register


@handles("hello", client_key=str)
async def hello(session: Session, message: dict[str, Any]) -> None:
    if session.connection is not None:
        raise ProtocolError("already_joined", "This page has joined already.")
    client_key = message["client_key"]
    if not _CLIENT_KEY.fullmatch(client_key):
        raise ProtocolError("bad_message", "client_key: 16 to 64 letters, digits, - or _.")
    if session.public:
        typed = message.get("display_name")
        name = names.clean(typed) if isinstance(typed, str) else ""
        if not 1 <= len(name) <= MAX_DISPLAY_NAME:
            raise ProtocolError(
                "bad_message", f"display_name: 1 to {MAX_DISPLAY_NAME} visible characters."
            )
        identity = Identity("guest", name, guest_key=client_key)
    else:
        assert session.person is not None, "a personal link names its holder"
        identity = session.person
    try:
        session.conference.identify(session, identity)
    except KeptOut as exc:
        await _close(session.ws, exc.why)
        return
    connection = PageConnection(session.ws, identity)
    connection.start()
    session.connection = connection
    try:
        await session.conference.join(connection, session.address)
    except KeptOut as exc:
        await connection.close(exc.why)


@handles("set_options", moderator=bool, recording=bool)
async def set_options(session: Session, message: dict[str, Any]) -> None:
    await session.conference.set_options(
        session.joined().identity, moderator=message["moderator"], recording=message["recording"]
    )


@handles("set_access", locked=bool, waiting_room=bool)
async def set_access(session: Session, message: dict[str, Any]) -> None:
    await session.conference.set_access(
        session.joined().identity, locked=message["locked"], waiting_room=message["waiting_room"]
    )


@handles("let_in", guest=str)
async def let_in(session: Session, message: dict[str, Any]) -> None:
    await session.conference.let_in(session.joined().identity, message["guest"])


@handles("let_in_all")
async def let_in_all(session: Session, message: dict[str, Any]) -> None:
    await session.conference.let_in(session.joined().identity, None)


@handles("turn_away", guest=str)
async def turn_away(session: Session, message: dict[str, Any]) -> None:
    await session.conference.turn_away(session.joined().identity, message["guest"])


@handles("turn_away_all")
async def turn_away_all(session: Session, message: dict[str, Any]) -> None:
    await session.conference.turn_away(session.joined().identity, None)


@handles("remove", participant=str)
async def remove(session: Session, message: dict[str, Any]) -> None:
    await session.conference.remove(session.joined().identity, message["participant"])


@handles("start")
async def start(session: Session, message: dict[str, Any]) -> None:
    await session.conference.start(session.joined().identity)


@handles("set_shown", participant=str, shown=bool)
async def set_shown(session: Session, message: dict[str, Any]) -> None:
    await session.conference.set_shown(
        session.joined().identity, message["participant"], message["shown"]
    )


@handles("set_permission", participant=str, permission=str)
async def set_permission(session: Session, message: dict[str, Any]) -> None:
    await session.conference.set_permission(
        session.joined().identity, message["participant"], message["permission"]
    )


@handles("end")
async def end(session: Session, message: dict[str, Any]) -> None:
    await session.conference.end(session.joined().identity)


@handles("reopen")
async def reopen(session: Session, message: dict[str, Any]) -> None:
    """Sent before hello by a host's page: the conference it would join has ended."""
    identity = session.joined().identity if session.person is None else session.person
    await session.conference.reopen(identity)


@handles("join_media")
async def join_media(session: Session, message: dict[str, Any]) -> None:
    await session.conference.join_media(session.joined())


@handles("answer", connection=str, sdp=str)
async def answer(session: Session, message: dict[str, Any]) -> None:
    await session.conference.answer(session.joined(), message["connection"], message["sdp"])


@handles("leave")
async def leave(session: Session, message: dict[str, Any]) -> None:
    """Gone at once, without the grace period of a page that merely closed."""
    connection = session.joined()
    await session.conference.leave(connection, at_once=True)
    await connection.end(WSCloseCode.OK, "left")


@handles("ping")
async def ping(session: Session, message: dict[str, Any]) -> None:
    """Only the result, which carries the server's clock (once the page has said hello,
    as for everything else)."""
    session.joined()


def _parse(text: str, session: Session) -> tuple[int, dict[str, Any]]:
    """The message and its id: from here on, an error answers that id."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # nested past what the parser follows
        raise ProtocolError("bad_json", "Messages are JSON objects.") from None
    if not isinstance(message, dict) or message.get("v") != 1:
        raise ProtocolError("bad_message", 'Messages are JSON objects with "v": 1.')
    message_id = message.get("id")
    if type(message_id) is not int or message_id <= session.last_id:
        raise ProtocolError("bad_message", "id: a number larger than the previous one.")
    session.last_id = message_id
    return message_id, message


def _handler_for(message: dict[str, Any]) -> Handler:
    message_type = message.get("type")
    entry = _HANDLERS.get(message_type) if isinstance(message_type, str) else None
    if entry is None:
        raise ProtocolError("unknown_type", "Unknown message type.")
    handler, fields = entry
    for name, kind in fields.items():
        if type(message.get(name)) is not kind:
            raise ProtocolError("bad_message", f"{name}: {kind.__name__} expected.")
    return handler


def _check_flood(session: Session) -> None:
    now = time.monotonic()
    # Checked before counting this one: FLOOD_MESSAGES in the window are still fine.
    if len(session.recent) == FLOOD_MESSAGES and now - session.recent[0] < FLOOD_WINDOW_SECONDS:
        raise ProtocolError("too_many", "Too many messages: this page is closed.", close=True)
    session.recent.append(now)


async def _answer(session: Session, text: str) -> bool:
    """Handle one message; False when the socket must close."""
    message_id: int | None = None
    try:
        _check_flood(session)
        message_id, message = _parse(text, session)
        await _handler_for(message)(session, message)
        if message["type"] in _SAVED_BEFORE_ANSWERED:
            await session.conference.saved()
    except ProtocolError as exc:
        await _reply(session, _error(message_id, exc.code, exc.message), now=exc.close)
        return not exc.close
    except PermissionDenied as exc:
        await _reply(session, _error(message_id, "not_host", exc.message))
    except Refused as exc:
        await _reply(session, _error(message_id, exc.reason, exc.message))
    except ServerBusy as exc:
        await _reply(session, _error(message_id, exc.code, exc.message))
    else:
        await _reply(session, {"type": "result", "id": message_id, "server_time": now_ms()})
    return True


def _error(message_id: int | None, code: str, text: str) -> dict[str, Any]:
    return {"type": "error", "id": message_id, "code": code, "message": text}


async def _reply(session: Session, message: dict[str, Any], *, now: bool = False) -> None:
    """In order with everything else through the page's queue once it has joined;
    before that (at most one answer per message read), or when the socket is about
    to close, straight away."""
    if session.connection is not None and not now:
        session.connection.send(message)
    else:
        await session.ws.send_json({"v": PROTOCOL_VERSION, **message})


async def _socket(request: web.Request, kind: Literal["personal", "public"]) -> web.StreamResponse:
    opened = await open_join_link(request.app, request.match_info["token"], kind)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20.0)
    await ws.prepare(request)
    # A link that cannot be used now is told so with a close code the page shows,
    # rather than refused at the upgrade, which a page cannot tell from a network drop.
    if opened is None or opened.state != "open":
        state = "unknown" if opened is None else opened.state
        await ws.close(code=_CLOSED_LINK[state], message=state.encode())
        return ws
    person = None
    if opened.person is not None:
        kind_of_person: ParticipantKind = "staff" if opened.link.kind == "staff" else "patient"
        person = Identity(kind_of_person, opened.person.name, opened.person.id)
    conference = request.app[keys.CONFERENCES].open(opened.event)
    if conference.ended_by is not None and not (person is not None and person.is_host):
        await _close(ws, Closing.ENDED)
        return ws
    session = Session(
        ws, conference, person, public=kind == "public", address=client_address(request)
    )
    try:
        conference.attach(session, session.address, person)
    except KeptOut as exc:
        await _close(ws, exc.why)
        return ws
    try:
        await _read(session)
    finally:
        try:
            if session.connection is not None:
                # Carried through even if the handler is cancelled meanwhile (aiohttp
                # may, when the connection drops): the person must still leave.
                await asyncio.shield(_leave(session.conference, session.connection))
        finally:
            session.conference.detach(session)
    return ws


async def _leave(conference: Conference, connection: PageConnection) -> None:
    """After a page's socket has ended: its holder leaves, and its writer stops."""
    await conference.leave(connection)
    await connection.finish()


async def _read(session: Session) -> None:
    ws = session.ws
    while True:
        # A page says hello at once; one that does not is not kept open.
        ended = session.conference.ended_by is not None
        timeout: float | None = None
        if session.connection is None:
            timeout = REOPEN_WAIT_SECONDS if ended else HELLO_TIMEOUT_SECONDS
        try:
            frame = await ws.receive(timeout=timeout)
        except TimeoutError:
            if ended:
                await _close(ws, Closing.ENDED)
            else:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no hello")
            return
        if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        if frame.type == WSMsgType.ERROR:
            return  # aiohttp has closed the socket (1009 for a message too large)
        if frame.type == WSMsgType.TEXT:
            keep_open = await _answer(session, frame.data)
        else:
            keep_open = await _refuse_binary(session)
        if not keep_open:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
            return


async def _close(ws: web.WebSocketResponse, why: Closing) -> None:
    await ws.close(code=close_code(why), message=close_text(why).encode())


async def _refuse_binary(session: Session) -> bool:
    try:
        _check_flood(session)
    except ProtocolError as exc:
        await _reply(session, _error(None, exc.code, exc.message), now=True)
        return False
    await _reply(session, _error(None, "bad_message", "Messages are text."))
    return True


@routes.get("/j/{token}/ws")
async def personal_socket(request: web.Request) -> web.StreamResponse:
    return await _socket(request, "personal")


@routes.get("/p/{token}/ws")
async def public_socket(request: web.Request) -> web.StreamResponse:
    return await _socket(request, "public")
