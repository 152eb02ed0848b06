"""The landing page's websocket (docs/lobby-protocol.md): `/j/<token>/ws` and
`/p/<token>/ws`, for the lobby and then the conference's signalling. Each message
type has a handler, which receives the message as web/protocol.py declares it; what
a message may change is decided by the Conference, never here."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from ... import keys
from ...conference.admission import KeptOut
from ...conference.coordinator import Conference
from ...conference.identity import Closing, Identity
from ...conference.visibility import now_ms
from ...errors import ClinicConfError
from ...page_messages import Error, ParticipantKind, Result
from .. import protocol
from ..middleware import client_address
from ..protocol import (
    LINK_CLOSE_CODES,
    PROTOCOL_VERSION,
    Answer,
    ClientMessage,
    End,
    GuestHello,
    Hello,
    JoinMedia,
    Leave,
    LetIn,
    LetInAll,
    Ping,
    ProtocolError,
    Remove,
    Reopen,
    SetAccess,
    SetOptions,
    SetPermission,
    SetShown,
    Start,
    TurnAway,
    TurnAwayAll,
    close_code,
    close_text,
)
from ..socket import PageConnection
from .join import open_join_link

routes = web.RouteTableDef()

# An SDP answer for a full conference fits; a lobby message is far smaller.
MAX_MESSAGE_BYTES: Final = 64 * 1024
HELLO_TIMEOUT_SECONDS: Final = 10.0
# A host's page on an ended conference may ask to open it again (`reopen`) first; one
# that does not hears soon that it has ended, as everyone else's does at once.
REOPEN_WAIT_SECONDS: Final = 2.0
# More than this many messages in the window is no person clicking: the page is closed.
FLOOD_MESSAGES: Final = 20
FLOOD_WINDOW_SECONDS: Final = 5.0


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


M = TypeVar("M", bound=ClientMessage)
Handler = Callable[[Session, M], Awaitable[None]]
# Each message type's handler; it receives the message read as its model.
_HANDLERS: dict[str, Handler[Any]] = {}
# A host's change is answered once written (conference/persistence.py): a server killed the
# moment after still takes it up again.
_SAVED_BEFORE_ANSWERED: Final = frozenset(
    {"set_options", "set_access", "let_in", "let_in_all", "turn_away", "turn_away_all",
     "remove", "start", "set_shown", "set_permission", "end", "reopen"}
)  # fmt: skip


def handles(model: type[M]) -> Callable[[Handler[M]], Handler[M]]:
    def register(handler: Handler[M]) -> Handler[M]:
        _HANDLERS[protocol.message_type(model)] = handler
        return handler

    return register


@handles(Hello)
async def hello(session: Session, message: Hello) -> None:
    if isinstance(message, GuestHello):  # what a public link's page sends
        identity = Identity("guest", message.display_name, guest_key=message.client_key)
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


@handles(SetOptions)
async def set_options(session: Session, message: SetOptions) -> None:
    await session.conference.set_options(
        session.joined().identity, moderator=message.moderator, recording=message.recording
    )


@handles(SetAccess)
async def set_access(session: Session, message: SetAccess) -> None:
    await session.conference.set_access(
        session.joined().identity, locked=message.locked, waiting_room=message.waiting_room
    )


@handles(LetIn)
async def let_in(session: Session, message: LetIn) -> None:
    await session.conference.let_in(session.joined().identity, message.guest)


@handles(LetInAll)
async def let_in_all(session: Session, message: LetInAll) -> None:
    await session.conference.let_in(session.joined().identity, None)


@handles(TurnAway)
async def turn_away(session: Session, message: TurnAway) -> None:
    await session.conference.turn_away(session.joined().identity, message.guest)


@handles(TurnAwayAll)
async def turn_away_all(session: Session, message: TurnAwayAll) -> None:
    await session.conference.turn_away(session.joined().identity, None)


@handles(Remove)
async def remove(session: Session, message: Remove) -> None:
    await session.conference.remove(session.joined().identity, message.participant)


@handles(Start)
async def start(session: Session, message: Start) -> None:
    await session.conference.start(session.joined().identity)


@handles(SetShown)
async def set_shown(session: Session, message: SetShown) -> None:
    await session.conference.set_shown(
        session.joined().identity, message.participant, message.shown
    )


@handles(SetPermission)
async def set_permission(session: Session, message: SetPermission) -> None:
    await session.conference.set_permission(
        session.joined().identity, message.participant, message.permission
    )


@handles(End)
async def end(session: Session, message: End) -> None:
    await session.conference.end(session.joined().identity)


@handles(Reopen)
async def reopen(session: Session, message: Reopen) -> None:
    """Sent before hello by a host's page: the conference it would join has ended."""
    identity = session.joined().identity if session.person is None else session.person
    await session.conference.reopen(identity)


@handles(JoinMedia)
async def join_media(session: Session, message: JoinMedia) -> None:
    await session.conference.join_media(session.joined())


@handles(Answer)
async def answer(session: Session, message: Answer) -> None:
    await session.conference.answer(session.joined(), message.connection, message.sdp)


@handles(Leave)
async def leave(session: Session, message: Leave) -> None:
    """Gone at once, without the grace period of a page that merely closed."""
    connection = session.joined()
    await session.conference.leave(connection, at_once=True)
    await connection.end(WSCloseCode.OK, "left")


@handles(Ping)
async def ping(session: Session, message: Ping) -> None:
    """Only the result, which carries the server's clock (once the page has said hello,
    as for everything else)."""
    session.joined()


def _parse(text: str, session: Session) -> tuple[int, dict[str, Any]]:
    """The message and its id: from here on, an error answers that id."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):  # nested past what the parser follows
        raise ProtocolError("bad_json", "Messages are JSON objects.") from None
    envelope = protocol.read_envelope(raw)
    if envelope.id <= session.last_id:
        raise ProtocolError("bad_message", "id: a number larger than the previous one.")
    session.last_id = envelope.id
    return envelope.id, raw


def _typed(raw: dict[str, Any], session: Session) -> ClientMessage:
    """The message as its type declares it (a guest's hello names them)."""
    # Said once: a second hello is refused as such, whatever it carries.
    if raw.get("type") == "hello" and session.connection is not None:
        raise ProtocolError("already_joined", "This page has joined already.")
    return protocol.read_message(raw, guest=session.public)


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
        message_id, raw = _parse(text, session)
        message = _typed(raw, session)
        message_type = protocol.message_type(type(message))
        await _HANDLERS[message_type](session, message)
        if message_type in _SAVED_BEFORE_ANSWERED:
            await session.conference.saved()
    except ProtocolError as exc:
        await _reply(session, protocol.error(message_id, exc.code, exc.message), now=exc.close)
        return not exc.close
    except ClinicConfError as exc:
        await _reply(session, _refused(message_id, exc))
    else:
        await _reply(session, protocol.result(message_id, now_ms()))
    return True


def _refused(message_id: int | None, exc: ClinicConfError) -> Error:
    answer = protocol.error_answer(exc)
    return protocol.error(message_id, answer.socket_code, answer.message)


async def _reply(session: Session, message: Result | Error, *, now: bool = False) -> None:
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
        await ws.close(code=LINK_CLOSE_CODES[state], message=state.encode())
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
        await _reply(session, protocol.error(None, exc.code, exc.message), now=True)
        return False
    await _reply(session, protocol.error(None, "bad_message", "Messages are text."))
    return True


@routes.get("/j/{token}/ws")
async def personal_socket(request: web.Request) -> web.StreamResponse:
    return await _socket(request, "personal")


@routes.get("/p/{token}/ws")
async def public_socket(request: web.Request) -> web.StreamResponse:
    return await _socket(request, "public")
