"""The websocket's declaration (web/protocol.py, clinicconf/page_messages.py) against
what uses it: the page's own copy of the close codes, the handlers, the messages the
server really sends, and how a message that is wrong is told."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Final

import pytest
from aiohttp import WSMsgType
from pydantic import ConfigDict, Field, TypeAdapter

from clinicconf.conference.identity import Closing
from clinicconf.errors import NotFound, PermissionDenied, Refused, ServerBusy
from clinicconf.page_messages import ServerMessage
from clinicconf.web import protocol
from clinicconf.web.protocol import (
    CLOSE_CODES,
    GUEST_MESSAGES,
    LINK_CLOSE_CODES,
    LINKED_MESSAGES,
    GuestHello,
    ProtocolError,
    SetOptions,
)
from clinicconf.web.views import lobby as lobby_view

from ...support.lobby import RECEIVE_TIMEOUT, Lobby, Page
from ...support.servers import Client

STATIC: Final = Path(protocol.__file__).parent / "static"
# Each message as its `type` declares it, and nothing more.
SERVER_MESSAGES: Final = TypeAdapter[ServerMessage](
    Annotated[ServerMessage, Field(discriminator="type")], config=ConfigDict(extra="forbid")
)


def js_object(source: str, name: str) -> str:
    found = re.search(rf"const {name} = \{{(.*?)\}};", source, re.DOTALL)
    assert found is not None, f"{name} is not in the script"
    return found.group(1)


def test_the_pages_close_codes_are_the_servers() -> None:
    script = (STATIC / "lobby.js").read_text()
    page = {
        name: int(code) for name, code in re.findall(r"(\w+): (\d+)", js_object(script, "CLOSE"))
    }
    server = {why.value: code for why, code in CLOSE_CODES.items()} | LINK_CLOSE_CODES
    assert {name: server.get(name) for name in page} == page
    # Every code that closes a page for good (lobby_socket.js stops reconnecting on
    # them) is one the page puts into words.
    final = {code for code in server.values() if 4400 <= code <= 4499}
    assert set(page.values()) == final
    explained = set(re.findall(r"\[CLOSE\.(\w+)\]:", js_object(script, "CLOSED_FOR_GOOD")))
    assert explained == set(page)
    reconnecting = js_object((STATIC / "lobby_socket.js").read_text(), "FINAL_CLOSE_CODES")
    assert reconnecting.split() == ["min:", "4400,", "max:", "4499"]
    assert not 4400 <= CLOSE_CODES[Closing.EVENT_CHANGED] <= 4499, "that page must reconnect"


def test_each_declared_message_has_its_handler() -> None:
    assert set(lobby_view._HANDLERS) == set(LINKED_MESSAGES) == set(GUEST_MESSAGES)


def problem(raw: dict[str, Any], *, guest: bool = False) -> tuple[str, str]:
    with pytest.raises(ProtocolError) as raised:
        protocol.read_message(protocol.read_envelope(raw).model_dump() | raw, guest=guest)
    return raised.value.code, raised.value.message


def test_a_wrong_message_is_told_in_words() -> None:
    head = {"v": 1, "id": 3}
    assert problem({**head, "type": "set_options", "moderator": 1, "recording": False}) == (
        "bad_message",
        "moderator: Input should be a valid boolean.",
    )
    assert problem({**head, "type": "set_options", "moderator": True}) == (
        "bad_message",
        "recording: Field required.",
    )
    assert problem({**head, "type": "hello", "client_key": "short"})[1] == (
        "client_key: 16 to 64 letters, digits, - or _."
    )
    guest_hello = {**head, "type": "hello", "client_key": "k" * 20, "display_name": "\u200b "}
    assert problem(guest_hello, guest=True)[1] == "display_name: 1 to 60 visible characters."
    assert problem({**head, "type": "make_me_host"}) == ("unknown_type", "Unknown message type.")
    with pytest.raises(ProtocolError, match='"v": 1'):
        protocol.read_envelope([head])
    with pytest.raises(ProtocolError, match="id: a number larger"):
        protocol.read_envelope({"v": 1, "id": True})


def test_a_message_is_read_as_its_model() -> None:
    said = {"v": 1, "id": 4, "type": "set_options", "moderator": True, "recording": False}
    assert protocol.read_message({**said, "extra": [1]}, guest=False) == SetOptions(**said)
    hello = {"v": 1, "id": 1, "type": "hello", "client_key": "k" * 20, "display_name": 5}
    # A linked person's name is known from the link: whatever the page says is ignored.
    assert type(protocol.read_message(hello, guest=False)) is protocol.Hello
    guest = protocol.read_message({**hello, "display_name": " Gail\u202e "}, guest=True)
    assert isinstance(guest, GuestHello) and guest.display_name == "Gail"


def test_a_domain_error_has_one_answer_at_each_edge() -> None:
    refused = protocol.error_answer(Refused("unknown_guest", "Nobody with that id is waiting."))
    assert (refused.status, refused.code, refused.socket_code) == (409, "conflict", "unknown_guest")
    denied = protocol.error_answer(PermissionDenied("Only a host."))
    assert (denied.status, denied.code, denied.socket_code) == (403, "forbidden", "not_host")
    busy = protocol.error_answer(ServerBusy())
    assert (busy.status, busy.socket_code) == (503, "busy")
    assert protocol.error_answer(NotFound("No such event.", "event")).field == "event"


class Recorded(Page):
    """A page that keeps everything the server sends it, in `heard`."""

    def __init__(self, page: Page, heard: list[dict[str, Any]]) -> None:
        super().__init__(page.ws)
        self.heard = heard

    async def receive(self, type_: str | None = None) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await self.ws.receive_json(timeout=RECEIVE_TIMEOUT)
            self.heard.append(message)
            if type_ is None or message["type"] == type_:
                return message

    async def read_to_the_end(self) -> None:
        async for frame in self.ws:
            if frame.type == WSMsgType.TEXT:
                self.heard.append(json.loads(frame.data))


async def test_what_the_server_sends_is_as_declared(client: Client, lobby: Lobby) -> None:
    heard: list[dict[str, Any]] = []

    async def page(path: str, **hello: Any) -> Recorded:
        opened = Recorded(Page(await client.ws_connect(path)), heard)
        await opened.send("hello", client_key=secrets.token_urlsafe(16), **hello)
        return opened

    host = await page(lobby.host_path)
    await host.receive("welcome")
    await host.request("set_access", locked=False, waiting_room=True)
    guest = await page(lobby.public_path, display_name="Gail Guest")
    await guest.receive("waiting_room")
    waiting = await host.receive("waiting")
    await host.request("let_in", guest=waiting["guests"][0]["id"])
    await guest.receive("welcome")
    pat = await page(lobby.pat_path)
    await pat.receive("welcome")
    await host.request("set_options", moderator=True, recording=False)
    await host.request("start")
    await host.request("join_media")
    await host.receive("offer")
    other_window = await page(lobby.host_path)
    await other_window.receive("welcome")
    await other_window.request("join_media")
    await host.receive("media_closed")
    assert (await guest.request("end"))["code"] == "not_host"
    await host.send("end")  # its pages close before the result could go out
    for each in (host, guest, pat, other_window):
        await each.read_to_the_end()

    for message in heard:
        assert message.pop("v") == protocol.PROTOCOL_VERSION
        SERVER_MESSAGES.validate_python(message, strict=True)
    assert {m["type"] for m in heard} >= {
        "welcome", "result", "error", "options", "waiting_room", "waiting", "presence",
        "started", "moderation", "offer", "media_closed", "ended",
    }  # fmt: skip
