"""The landing page's websocket (docs/lobby-protocol.md) fuzzed with Hypothesis: from
a host's, a patient's and a public guest's page, in the lobby and once the
conference is on, every message type the server handles and unknown ones, with
fields missing, of the wrong type, huge, nested or in any script, ids missing,
repeated, negative or huge, NaN written raw, text that is not JSON, deeply nested
JSON, binary frames and text frames that are not UTF-8.

Whatever is sent, each message is answered with a result or an error whose code the
protocol document lists, or the page is closed with a code it lists; the server logs no
error; and the conference goes on: a page opened afterwards gets its `welcome` and
its host can start it (unless the fuzzed host ended it, which it may)."""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import hypothesis
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

from clinicconf import keys
from clinicconf.db import utc_now
from clinicconf.moderation import Permission
from clinicconf.schedule import EventInput
from clinicconf.web.protocol import GUEST_MESSAGES, LINKED_MESSAGES, ClientMessage

from ...support.fuzzing import REPEATABLE
from ...support.lobby import RECEIVE_TIMEOUT, Lobby, Page, socket_path
from ...support.servers import Client

PROTOCOL = (Path(__file__).parents[3] / "docs" / "lobby-protocol.md").read_text()


def documented_error_codes() -> set[str]:
    """The codes in each list that begins "Error codes:", "More error codes:" or
    "Errors:" and ends with its sentence (what a remark in parentheses names is not
    a code)."""
    without_remarks = re.sub(r"\([^()]*\)", "", PROTOCOL)
    lists = re.findall(
        r"(?:error codes|errors):(.*?)\.\s", without_remarks, re.IGNORECASE | re.DOTALL
    )
    return {code for listing in lists for code in re.findall(r"`([a-z_]+)`", listing)}


ERROR_CODES: Final = documented_error_codes()
# Every close code the document names.
CLOSE_CODES: Final = {int(code) for code in re.findall(r"\b[14]\d{3}\b", PROTOCOL)}
MESSAGE_TYPES: Final = sorted(LINKED_MESSAGES)
Role = Literal["host", "patient", "guest"]
T = TypeVar("T")

FUZZ: Final = hypothesis.settings(
    REPEATABLE,
    max_examples=40,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    # The app, its client and caplog serve every example; each example opens a
    # conference of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- what a page sends -------------------------------------------------------------


class Token:
    """A placeholder resolved when the frame is sent."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING: Final = Token("MISSING")  # the key is left out
NEXT_ID: Final = Token("NEXT_ID")  # a number larger than any the page sent before
LAST_ID: Final = Token("LAST_ID")  # the page's previous id again


def mostly(usual: st.SearchStrategy[T], unusual: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`usual` three times in four (and what examples shrink towards); one_of would
    pick each alike."""
    return st.integers(0, 3).flatmap(lambda quarter: unusual if quarter == 3 else usual)


# Any JSON value, NaN and infinities included (json.dumps writes them raw).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=4,
)
# Past the 64 KiB a message may have, too (the page is closed with 1009).
huge_texts = st.builds(
    str.__mul__, st.sampled_from(["x", "é", "\ud800", "😀", " "]), st.integers(1, 70_000)
)
# What may replace any part of a message: nothing, any JSON value, huge text, or the
# page's previous id (or a number far from its next).
wrong_values = st.one_of(
    st.just(MISSING), json_values, huge_texts, st.just(LAST_ID), st.integers(-(2**70), 2**70)
)
UNKNOWN_TYPES: Final = ["offer", "make_me_host", ""]


@dataclass
class Heard:
    """What the fuzzed page has been told: the ids it might send back, and whether
    the conference has ended."""

    ids: set[str] = field(default_factory=set)
    ended: bool = False

    def note(self, message: Any) -> None:
        if isinstance(message, dict):
            if message.get("type") == "ended":
                self.ended = True
            for key, value in message.items():
                if key in ("id", "participant", "connection") and isinstance(value, str):
                    self.ids.add(value)
                self.note(value)
        elif isinstance(message, list):
            for item in message:
                self.note(item)


def typed_values(kind: type, heard: Heard) -> st.SearchStrategy[Any]:
    """Values of a field's type that the server might take (ids it sent, the
    permissions, a proper client key, a name) or not."""
    if kind is bool:
        return st.booleans()
    fitting = st.one_of(
        st.sampled_from([*sorted(heard.ids), *(p.value for p in Permission)]),
        st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True),
        st.text(),
    )
    return mostly(fitting, huge_texts)


def messages(heard: Heard) -> st.SearchStrategy[dict[str, Any]]:
    """A message of any type the server handles (or another), with every field of
    the right type, and then as many as two of its parts (or an extra field) wrong."""

    def of_type(message_type: str) -> st.SearchStrategy[dict[str, Any]]:
        # What either a linked person's page or a guest's declares (a guest's name).
        declared = {
            name: field.annotation
            for model in (LINKED_MESSAGES[message_type], GUEST_MESSAGES[message_type])
            for name, field in model.model_fields.items()
            if name not in ClientMessage.model_fields and name != "type"
        }
        return st.fixed_dictionaries(
            {
                "v": st.just(1),
                "id": st.just(NEXT_ID),
                "type": st.just(message_type),
                **{name: typed_values(kind, heard) for name, kind in declared.items()},
            }
        )

    def spoil(message: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        parts = st.sampled_from([*message, "extra"])
        spoiled = st.lists(st.tuples(parts, wrong_values), min_size=1, max_size=2)
        changes: st.SearchStrategy[list[tuple[str, Any]]] = st.just([]) | spoiled
        return changes.map(lambda changed: {**message, **dict(changed)})

    known = st.sampled_from(MESSAGE_TYPES).flatmap(of_type)
    unknown = st.sampled_from(UNKNOWN_TYPES).map(lambda name: {"v": 1, "id": NEXT_ID, "type": name})
    return mostly(known, unknown).flatmap(spoil)


@dataclass(frozen=True)
class Frame:
    """One websocket frame: a message to fill in with the page's ids, or raw text or
    bytes as they are."""

    message: dict[str, Any] | None = None
    text: str | None = None
    data: bytes | None = None
    opcode: WSMsgType = WSMsgType.TEXT


def raw_texts(types: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text that is no message: not JSON, nested past the parser's depth, another
    JSON value, or an object with a key twice."""
    return st.one_of(
        st.text(),
        st.builds(str.__mul__, st.sampled_from(["[", '{"a":', "[{}"]), st.integers(1, 30_000)),
        json_values.map(json.dumps),
        st.builds(
            lambda first, second: (
                json.dumps({"v": 1, "type": first})[:-1]
                + f", {json.dumps('type')}: {json.dumps(second)}}}"
            ),
            types,
            types,
        ),
    )


def frames(heard: Heard) -> st.SearchStrategy[Frame]:
    """Mostly messages; else text that is no message, bytes, or a text frame that is
    not UTF-8 (0xFF never is)."""
    others = st.one_of(
        raw_texts(st.sampled_from(MESSAGE_TYPES)).map(lambda text: Frame(text=text)),
        st.binary().map(lambda data: Frame(data=data, opcode=WSMsgType.BINARY)),
        st.binary().map(lambda data: Frame(data=b"\xff" + data)),
    )
    return mostly(messages(heard).map(lambda message: Frame(message=message)), others)


# --- a conference to fuzz ------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """The socket paths of a conference's links: Ada's (the host being fuzzed), Sam's
    (the other host, who checks the conference goes on), Pat's, and the public one."""

    ada: str
    sam: str
    pat: str
    public: str

    def of(self, role: Role) -> str:
        return {"host": self.ada, "patient": self.pat, "guest": self.public}[role]


async def new_conference(app: web.Application, lobby: Lobby) -> Links:
    """A Public Conference under way with the lobby's people, for one example alone."""
    scheduler = app[keys.SCHEDULER]
    template = await scheduler.get_event(lobby.event_id)
    start = utc_now() - timedelta(minutes=5)
    saved = await scheduler.create_event(
        lobby.host,
        EventInput(
            "Fuzzed session", template.event_type.id, start, start + timedelta(hours=1),
            [s.id for s in template.staff], [p.id for p in template.patients],
        ),
    )  # fmt: skip
    event_id = saved.event.id
    ada, sam = (s.id for s in template.staff)
    return Links(
        await socket_path(app, event_id, "staff", ada),
        await socket_path(app, event_id, "staff", sam),
        await socket_path(app, event_id, "patient", template.patients[0].id),
        await socket_path(app, event_id, "public", None),
    )


def hello_fields(role: Role) -> dict[str, str]:
    fields = {"client_key": secrets.token_urlsafe(16)}
    if role == "guest":
        fields["display_name"] = "Gail Guest"
    return fields


async def answer_or_close(page: Page, heard: Heard) -> dict[str, Any] | int:
    """The server's answer to what the page just sent: a result or an error (what
    comes before it is noted), or the code the server closed the page with."""
    while True:
        frame = await page.ws.receive(timeout=RECEIVE_TIMEOUT)
        if frame.type == WSMsgType.TEXT:
            message = json.loads(frame.data)
            assert message["v"] == 1, message
            heard.note(message)
            if message["type"] in ("result", "error"):
                return dict(message)
        else:
            assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), frame
            assert page.ws.close_code is not None, "the connection dropped without a close"
            return page.ws.close_code


async def send(page: Page, frame: Frame) -> int | None:
    """Send the frame, with the page's ids filled in; the id it carries, if a number."""
    if frame.message is None:
        text = frame.text
        if text is not None:
            await page.ws.send_str(text)
        else:
            assert frame.data is not None
            await page.ws.send_frame(frame.data, frame.opcode)
        return None
    next_id = page.next_id()  # the server asks only that ids grow: one may be skipped
    ids = {NEXT_ID: next_id, LAST_ID: next_id - 1}
    message = {
        key: ids.get(value, value) if isinstance(value, Token) else value
        for key, value in frame.message.items()
        if value is not MISSING
    }
    sent_id = message.get("id")
    await page.ws.send_str(json.dumps(message))
    return sent_id if type(sent_id) is int else None


def check_answer(answer: dict[str, Any] | int, sent_id: int | None) -> None:
    """A documented close, a result for the message sent, or a documented error for
    it (or, when its id could not be read, for no id)."""
    if isinstance(answer, int):
        assert answer in CLOSE_CODES, f"closed with {answer}, which is not documented"
    elif answer["type"] == "result":
        assert answer["id"] == sent_id, answer
    else:
        assert answer["code"] in ERROR_CODES, f"undocumented error code: {answer}"
        assert isinstance(answer["message"], str) and answer["message"], answer
        assert answer["id"] in (sent_id, None), answer


async def check_conference_goes_on(client: Client, links: Links, heard: Heard) -> None:
    """Another host opening a page now is welcomed and can start the conference, or,
    if the fuzzed host ended it, is told it has ended."""
    page = Page(await client.ws_connect(links.sam))
    try:
        if heard.ended:
            assert await answer_or_close(page, Heard()) == 4411
            return
        await page.send("hello", **hello_fields("host"))
        await page.receive("welcome")
        started = await page.request("start")
        assert started["type"] == "result" or started["code"] == "already_started", started
    finally:
        await page.ws.close()


async def fuzz_page(
    client: Client, app: web.Application, lobby: Lobby, role: Role, data: st.DataObject
) -> None:
    """One example: a new conference, maybe started with Sam's options; the role's
    page, maybe said hello; up to six frames drawn one by one, each from what the
    page has heard so far."""
    links = await new_conference(app, lobby)
    heard = Heard()
    pages: list[Page] = []
    try:
        if data.draw(st.booleans(), label="started"):
            sam = Page(await client.ws_connect(links.sam))
            pages.append(sam)
            await sam.send("hello", **hello_fields("host"))
            await sam.receive("welcome")
            options = data.draw(
                st.fixed_dictionaries({"moderator": st.booleans(), "recording": st.booleans()}),
                label="options",
            )
            assert (await sam.request("set_options", **options))["type"] == "result"
            assert (await sam.request("start"))["type"] == "result"
        page = Page(await client.ws_connect(links.of(role)))
        pages.append(page)
        if data.draw(mostly(st.just(True), st.just(False)), label="hello first"):
            await page.send("hello", **hello_fields(role))
            said = await answer_or_close(page, heard)
            assert isinstance(said, dict) and said["type"] == "result", said
        for _ in range(data.draw(st.integers(1, 6), label="frames")):
            frame = data.draw(frames(heard))
            sent_id = await send(page, frame)
            answer = await answer_or_close(page, heard)
            check_answer(answer, sent_id)
            if isinstance(answer, int):
                heard.ended = heard.ended or answer == 4411
                break
        await check_conference_goes_on(client, links, heard)
    finally:
        for page in pages:
            await page.ws.close()


@pytest.mark.parametrize("role", ["host", "patient", "guest"])
@FUZZ
@given(data=st.data())
async def test_whatever_a_page_sends_is_answered_as_documented(
    client: Client,
    app: web.Application,
    lobby: Lobby,
    caplog: pytest.LogCaptureFixture,
    role: Role,
    data: st.DataObject,
) -> None:
    caplog.set_level(logging.ERROR)
    logged_before = len(caplog.records)
    await fuzz_page(client, app, lobby, role, data)
    assert [r.getMessage() for r in caplog.records[logged_before:]] == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "[" * 50_000,
            id="nested-50000-deep",
        ),
        pytest.param(
            '{"v": 1, "id": ID, "type": []}',
            id="type-a-list",
        ),
    ],
)
async def test_frames_the_fuzzing_found_are_answered_as_documented(
    client: Client,
    app: web.Application,
    lobby: Lobby,
    caplog: pytest.LogCaptureFixture,
    text: str,
) -> None:
    """Frames the fuzzing found the server failing on, each sent from a patient's
    page that has said hello (ID: the page's next id)."""
    caplog.set_level(logging.ERROR)
    links = await new_conference(app, lobby)
    page = Page(await client.ws_connect(links.pat))
    assert (await page.request("hello", **hello_fields("patient")))["type"] == "result"
    message_id = page.next_id()
    await page.ws.send_str(text.replace("ID", str(message_id)))
    check_answer(await answer_or_close(page, Heard()), message_id)
    await check_conference_goes_on(client, links, Heard())
    assert [r.getMessage() for r in caplog.records] == []
