"""What a page may send that it should not (docs/lobby-protocol.md, "Bad input"): each
gets a clear answer, the offending page is closed where the abuse persists, nothing
changes in the conference, and the server goes on serving everyone else."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from clinicconf import audit, keys
from clinicconf.accounts import StaffUser
from clinicconf.db import utc_now
from clinicconf.schedule import EventInput, EventTypeInput, PatientInput
from clinicconf.web.views import lobby as lobby_view
from clinicconf.web.views.lobby import FLOOD_MESSAGES, MAX_MESSAGE_BYTES

from ...support.accounts import Account
from ...support.lobby import GRACE_SECONDS, RECEIVE_TIMEOUT, Lobby, Page, by_name, socket_path
from ...support.servers import Client

# What the conference records when it changes; a refused message records none of it.
CHANGES = {"options_changed", "access_changed", "conference_started"}
# What only a host may do: change the options and who may come in, then start.
HOST_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("set_options", {"moderator": True, "recording": True}),
    ("set_access", {"locked": False, "waiting_room": True}),
    ("let_in_all", {}),
    ("turn_away_all", {}),
    ("start", {}),
]


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a page sends, the server handles it: nothing it logs is an error."""
    yield
    records = caplog.get_records("call")
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []


def lobby_state(welcome: dict[str, Any]) -> tuple[Any, ...]:
    """What a page is told about the conference: options, start, who is there."""
    people = sorted((p["name"], p["active"]) for p in welcome["participants"])
    return welcome["options"], welcome["started"], people


async def recorded_changes(app: web.Application, event_id: int) -> list[str]:
    entries = await audit.entries(app[keys.DATABASE], event_id=event_id)
    return [e["action"] for e in entries if e["action"] in CHANGES]


async def assert_unchanged(
    app: web.Application, lobby: Lobby, open_page: Any, before: dict[str, Any]
) -> None:
    """A page opened now (another tab of the host's) finds the conference as the
    welcome `before` described it, nothing was recorded, and the server answers."""
    page, welcome = await open_page(lobby.host_path)
    assert lobby_state(welcome) == lobby_state(before)
    assert await recorded_changes(app, lobby.event_id) == []
    assert (await page.request("ping"))["type"] == "result"


# Frames a page might send; ID stands for the page's next message id.
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"id": ID, "type": "ping"}', "bad_message"),
        ('{"v": 2, "id": ID, "type": "ping"}', "bad_message"),
        ('{"v": 1, "id": 1, "type": "ping"}', "bad_message"),  # hello was 1
        ('{"v": 1, "id": true, "type": "ping"}', "bad_message"),
        ('{"v": 1, "id": ID, "type": "make_me_host"}', "unknown_type"),
        ('{"v": 1, "id": ID, "type": "set_options", "moderator": "yes", "recording": true}',
         "bad_message"),
        ('{"v": 1, "id": ID, "type": "set_options", "moderator": true}', "bad_message"),
        (b'{"v": 1, "id": ID, "type": "start"}', "bad_message"),  # a binary frame
    ],
)  # fmt: skip
async def test_a_malformed_message_is_answered_and_changes_nothing(
    app: web.Application, lobby: Lobby, open_page: Any, frame: str | bytes, code: str
) -> None:
    # The host sends it: even their malformed messages change nothing.
    host, before = await open_page(lobby.host_path)
    if isinstance(frame, bytes):
        await host.ws.send_bytes(frame.replace(b"ID", str(host.next_id()).encode()))
    else:
        await host.ws.send_str(frame.replace("ID", str(host.next_id())))
    error = await host.receive("error")
    assert error["code"] == code
    assert error["message"]
    # The page stays usable: a mistake is not an attack.
    assert (await host.request("ping"))["type"] == "result"
    await assert_unchanged(app, lobby, open_page, before)


async def test_a_refusal_names_the_message_it_answers(lobby: Lobby, open_page: Any) -> None:
    """A page matches answers to its requests by id: once the id is valid, the error
    carries it, whatever else is wrong with the message."""
    host, _ = await open_page(lobby.host_path)
    for type_, fields, code in [
        ("make_me_host", {}, "unknown_type"),
        ("set_options", {"moderator": "yes", "recording": True}, "bad_message"),
    ]:
        answer = await host.request(type_, **fields)  # waits for the answer with its id
        assert (answer["type"], answer["code"]) == ("error", code)


async def test_an_oversized_message_closes_the_page_and_others_carry_on(
    app: web.Application, lobby: Lobby, open_page: Any
) -> None:
    host, before = await open_page(lobby.host_path)
    guest, _ = await open_page(lobby.public_path, display_name="Gail")
    assert (await host.presence())["active"] is True

    await guest.send("set_options", moderator=True, recording=True, padding="x" * MAX_MESSAGE_BYTES)
    assert await guest.closed() == 1009
    left = await host.presence()
    assert (left["name"], left["active"]) == ("Gail", False)
    assert (await host.request("ping"))["type"] == "result"
    await assert_unchanged(app, lobby, open_page, before)


async def test_an_oversized_first_message_closes_the_page(
    client: Client, lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    _, before = await open_page(lobby.host_path)
    stranger = Page(await client.ws_connect(lobby.public_path))
    await stranger.send("hello", client_key="k" * 20, display_name="x" * MAX_MESSAGE_BYTES)
    assert await stranger.closed() == 1009
    await assert_unchanged(app, lobby, open_page, before)


async def test_a_flood_closes_the_page_and_its_holder_leaves_like_anyone(
    app: web.Application, lobby: Lobby, open_page: Any
) -> None:
    host, before = await open_page(lobby.host_path)
    guest, _ = await open_page(lobby.public_path, display_name="Gail")
    await host.presence()
    assert (await guest.receive("result"))["id"] == 1  # hello, the first message

    # As many messages as a page may send in the window ...
    sent = [await guest.send("ping") for _ in range(FLOOD_MESSAGES - 1)]
    answered = [(await guest.receive("result"))["id"] for _ in sent]
    assert answered == sent
    # ... and one more is a flood: the page hears why, and is closed.
    await guest.send("set_options", moderator=True, recording=True)
    assert (await guest.receive("error"))["code"] == "too_many"
    assert await guest.closed() == 1008

    # The flooder's presence ends after the grace period, as anyone's who leaves.
    async with asyncio.timeout(GRACE_SECONDS + RECEIVE_TIMEOUT):
        left = await host.presence()
    assert (left["name"], left["active"]) == ("Gail", False)
    await assert_unchanged(app, lobby, open_page, before)


async def test_a_flood_of_binary_frames_before_hello_closes_the_page_too(
    client: Client, lobby: Lobby
) -> None:
    page = Page(await client.ws_connect(lobby.public_path))
    for _ in range(FLOOD_MESSAGES):
        await page.ws.send_bytes(b"\x00")
        assert (await page.receive("error"))["code"] == "bad_message"
    await page.ws.send_bytes(b"\x00")
    assert (await page.receive("error"))["code"] == "too_many"
    assert await page.closed() == 1008


async def test_a_page_that_never_says_hello_is_closed(
    client: Client, lobby: Lobby, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real limit is 10 s; a shorter one keeps the test quick.
    monkeypatch.setattr(lobby_view, "HELLO_TIMEOUT_SECONDS", 0.3)
    silent = Page(await client.ws_connect(lobby.public_path))
    assert await silent.closed() == 1008


async def test_a_guest_cannot_become_a_host_whatever_it_sends(
    app: web.Application, lobby: Lobby, open_page: Any
) -> None:
    await open_page(lobby.host_path)
    # Named like the host, claiming to be staff and a host: still a guest.
    guest, welcome = await open_page(
        lobby.public_path, display_name="Ada Admin", kind="staff", host=True
    )
    assert welcome["you"]["kind"] == "guest"
    assert welcome["you"]["host"] is False
    _, before = await open_page(lobby.host_path)
    for type_, fields in HOST_ACTIONS:
        refused = await guest.request(type_, **fields)
        assert (refused["type"], refused["code"]) == ("error", "not_host")
    await assert_unchanged(app, lobby, open_page, before)


async def test_a_link_of_one_event_neither_sees_nor_touches_another(
    app: web.Application, lobby: Lobby, open_page: Any, staff: Account
) -> None:
    """Two conferences at the same time: whatever a page of the first says (even
    naming the other event), the second's people hear nothing of it."""
    scheduler = app[keys.SCHEDULER]
    sam = StaffUser(staff.id, "Sam Staff", staff.email, False)
    kind = await scheduler.create_event_type(lobby.host, EventTypeInput("Family", True, True))
    rita = await scheduler.create_patient(lobby.host, PatientInput("Rita Rossi", "R-3"))
    start = utc_now() - timedelta(minutes=5)
    other = await scheduler.create_event(
        sam,
        EventInput("Family session", kind.id, start, start + timedelta(hours=1), [staff.id],
                   [rita.id]),
    )  # fmt: skip
    other_id = other.event.id
    other_host, other_before = await open_page(await socket_path(app, other_id, "staff", staff.id))

    # Pat (of the first event) and a guest of its public link, naming the other event.
    _, pat_sees = await open_page(lobby.pat_path, event_id=other_id)
    _, guest_sees = await open_page(lobby.public_path, display_name="Gail", event_id=other_id)
    for welcome in (pat_sees, guest_sees):
        assert welcome["event"]["title"] == "Group session"
        assert "Rita Rossi" not in by_name(welcome)
    # The first event's host runs the first event only.
    host, _ = await open_page(lobby.host_path)
    for type_, fields in HOST_ACTIONS:
        assert (await host.request(type_, **fields, event_id=other_id))["type"] == "result"

    assert (await other_host.request("ping"))["type"] == "result"
    # No arrival, no options, no start: only the answer to its own hello.
    assert [m["type"] for m in other_host.passed_over] == ["result"]
    _, other_after = await open_page(await socket_path(app, other_id, "staff", staff.id))
    assert lobby_state(other_after) == lobby_state(other_before)
    assert await recorded_changes(app, other_id) == []


# --- a page that does not read ---------------------------------------------------------

# 32 MB: far more than the page's queue and the sockets' buffers hold (Linux lets
# a socket buffer 4 MB at most by default).
FILLER_MESSAGES = 4000
FILLER_BYTES = 8192


async def open_unread_page(client: Client, path: str, display_name: str) -> socket.socket:
    """A page that says hello and then never reads again: a raw socket with a small
    receive buffer (the aiohttp client would read and buffer on its own)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = client.server.host, client.server.port
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while not response.endswith(b"\r\n\r\n"):  # byte by byte: nothing past the headers
        response += await loop.sock_recv(sock, 1)
    assert response.startswith(b"HTTP/1.1 101 ")
    hello = {"v": 1, "id": 1, "type": "hello", "client_key": "s" * 20, "display_name": display_name}
    await loop.sock_sendall(sock, _client_text_frame(json.dumps(hello)))
    return sock


def _client_text_frame(text: str) -> bytes:
    """One masked text frame, as a browser sends it (RFC 6455 section 5.2)."""
    payload = text.encode()
    assert len(payload) < 126, "a short frame: the length fits in the second byte"
    mask = secrets.token_bytes(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def read_to_the_end(sock: socket.socket) -> int:
    """How many bytes the server still delivers before the connection ends."""
    loop = asyncio.get_running_loop()
    total = 0
    try:
        while chunk := await loop.sock_recv(sock, 1 << 16):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


async def test_a_page_that_does_not_read_is_disconnected_not_buffered(
    app: web.Application, client: Client, lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    sock = await open_unread_page(client, lobby.public_path, "Sid Slow")
    try:
        arrived = await host.presence()
        assert (arrived["name"], arrived["active"]) == ("Sid Slow", True)
        # A busy conference's traffic for Sid's page alone, given out as events
        # happen: the page's writer takes each message when it can.
        conference = app[keys.CONFERENCES].get(lobby.event_id)
        assert conference is not None
        [slow] = [c for c in conference.connections if c.identity.kind == "guest"]
        filler = {"type": "filler", "text": "x" * FILLER_BYTES}
        for _ in range(FILLER_MESSAGES):
            slow.send(filler)
            await asyncio.sleep(0)

        # Sid's page is closed and Sid leaves like anyone, while the socket still
        # has not read a byte; the host's page never waited for it.
        async with asyncio.timeout(GRACE_SECONDS + RECEIVE_TIMEOUT):
            left = await host.presence()
        assert (left["name"], left["active"]) == ("Sid Slow", False)
        assert (await host.request("ping"))["type"] == "result"
        # What the server kept for Sid was bounded: most of it was dropped, not queued.
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            delivered = await read_to_the_end(sock)
        assert delivered < FILLER_MESSAGES * FILLER_BYTES / 4
    finally:
        sock.close()
