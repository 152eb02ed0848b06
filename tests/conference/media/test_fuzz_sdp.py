"""SDP answers to the server's offers, mutated with Hypothesis from real ones and sent
as `answer` (docs/lobby-protocol.md, "The conference"). The real answers come from
two answerers, each answering the offer the server just made:

- Chromium, as the landing page does (web/static/conference.js): its fake camera and
  microphone on the `publish` m-lines, receiving on the others, every candidate
  gathered. This is what clinics' browsers send.
- aiortc, as a headless participant does (its own stack's answer).

Each answer is mutated on the way (lines dropped, repeated or moved, directions
flipped, fingerprints, candidates and mids corrupted, numbers made huge, random text
put in) before the server reads it; the peer that made it goes on as it is.

Each mutated answer is taken (a result) or refused with `bad_sdp`; the server logs
no error; and the same page then joins media again, answers well, and receives the
host's picture and sound: the server goes on serving, hostile answers or not. (The
page only ever answers: the server makes every offer, and an `offer` from a page is
an unknown type, see test_fuzz_socket.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pytest
from aiohttp.client_ws import ClientWebSocketResponse
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from playwright.async_api import Page

from clinicconf.config import Settings

from ...support.browser import chromium, new_context, watch_errors
from ...support.fuzzing import REPEATABLE
from ...support.lobby import RECEIVE_TIMEOUT, Lobby
from ...support.media_peers import Join, MediaParticipant, enter, introduce
from ...support.servers import Client, wait_until

HOST_SHADE, PAGE_SHADE = 50, 200
# How long an answer the server took may settle (connect, or fail) before the page
# joins again: long enough on loopback for ICE and DTLS, and a bound per example.
SETTLE_SECONDS: Final = 1.5

FUZZ: Final = hypothesis_settings(
    REPEATABLE,
    max_examples=30,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    # One conference, its host in it throughout, for every example; each example's
    # page joins, answers and leaves.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- mutations of an SDP, line by line ------------------------------------------------

CRLF: Final = "\r\n"
DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
# Lines of which one field may be replaced: the kind of mutation names them.
FIELDS_OF: Final = (
    "a=fingerprint:", "a=candidate:", "a=mid:", "a=group:BUNDLE", "a=rtpmap:", "a=ssrc:",
    "a=ice-ufrag:", "a=ice-pwd:", "a=setup:", "a=extmap:", "a=rtcp-fb:", "m=", "c=", "o=",
)  # fmt: skip
KINDS: Final = ("drop", "repeat", "move", "insert", "truncate", "redirect", *FIELDS_OF)


@dataclass(frozen=True)
class Mutation:
    """One change to an answer's lines, drawn before the answer exists: `at` and `to`
    pick lines, fields or a length (modulo what there is), `text` is what is put in."""

    kind: str
    at: int
    to: int
    text: str

    def apply(self, lines: list[str]) -> list[str]:
        if not lines:
            return lines
        i = self.at % len(lines)
        if self.kind == "drop":
            return lines[:i] + lines[i + 1 :]
        if self.kind == "repeat":
            return lines[: i + 1] + lines[i:]
        if self.kind == "move":
            rest = lines[:i] + lines[i + 1 :]
            j = self.to % (len(rest) + 1)
            return [*rest[:j], lines[i], *rest[j:]]
        if self.kind == "insert":
            j = self.to % (len(lines) + 1)
            return [*lines[:j], self.text, *lines[j:]]
        if self.kind == "truncate":
            text = CRLF.join(lines)
            return text[: self.at % (len(text) + 1)].split(CRLF)
        if self.kind == "redirect":
            found = [n for n, line in enumerate(lines) if line.removeprefix("a=") in DIRECTIONS]
            new_line = "a=" + DIRECTIONS[self.to % len(DIRECTIONS)]
        else:
            found = [n for n, line in enumerate(lines) if line.startswith(self.kind)]
            new_line = ""
        if not found:
            return lines
        n = found[self.at % len(found)]
        if self.kind != "redirect":
            fields = lines[n].removeprefix(self.kind).split(" ")
            fields[self.to % len(fields)] = self.text
            new_line = self.kind + " ".join(fields)
        return [*lines[:n], new_line, *lines[n + 1 :]]


odd_texts = st.one_of(
    st.text(max_size=40),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " ", "0", "-1", "65536", "99999999999999999999", "NaN", "²", "::1"]),
)
mutations = st.builds(
    Mutation,
    kind=st.sampled_from(KINDS),
    at=st.integers(0, 2**16),
    to=st.integers(0, 2**16),
    text=st.one_of(
        odd_texts,
        odd_texts.map(lambda text: "a=" + text),
        st.sampled_from(["m=audio 9 UDP/TLS/RTP/SAVPF 96", "m=video 0 RTP/AVP 0", "v=0"]),
        st.just("a=x-padding:" + "x" * 60_001),  # past the 60,000 characters an answer may have
    ),
)


# --- the real answers ------------------------------------------------------------------


class Answerer(Protocol):
    """Makes the real answer to an offer, in place of the page's own aiortc peer."""

    async def answer(self, offer: dict[str, Any]) -> str: ...

    async def settled(self) -> bool:
        """Its newest connection has connected or failed."""
        ...


# What the landing page does with an offer (web/static/conference.js, #answer), the
# peer connection kept so that it may go on connecting.
CHROMIUM_ANSWER: Final = """
async ({ sdp, publish }) => {
  window.answerer?.close(); // the earlier example's, whatever became of it
  window.media?.getTracks().forEach((track) => track.stop());
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  [window.answerer, window.media] = [pc, media];
  await pc.setRemoteDescription({ type: "offer", sdp });
  for (const transceiver of pc.getTransceivers()) {
    const kind = ["audio", "video"].find((candidate) => publish[candidate] === transceiver.mid);
    if (kind) {
      await transceiver.sender.replaceTrack(media.getTracks().find((t) => t.kind === kind));
      transceiver.direction = "sendonly";
    } else {
      transceiver.direction = "recvonly";
    }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  while (pc.iceGatheringState !== "complete") await new Promise((r) => setTimeout(r, 20));
  return pc.localDescription.sdp;
}
"""
CHROMIUM_SETTLED: Final = """
() => ["connected", "failed", "closed"].includes(window.answerer.connectionState)
"""


class ChromiumAnswerer:
    def __init__(self, page: Page) -> None:
        self._page = page

    async def answer(self, offer: dict[str, Any]) -> str:
        sdp = await self._page.evaluate(CHROMIUM_ANSWER, offer)
        assert isinstance(sdp, str)
        return sdp

    async def settled(self) -> bool:
        return bool(await self._page.evaluate(CHROMIUM_SETTLED))


@pytest.fixture(params=["aiortc", "chromium"])
async def answerer(
    request: pytest.FixtureRequest, settings: Settings, client: Client
) -> AsyncIterator[Answerer | None]:
    """None: the page's own aiortc peer answers."""
    if request.param == "aiortc":
        yield None
        return
    errors: list[str] = []
    async with chromium() as browser:
        context = await new_context(browser, settings)
        page = await context.new_page()
        watch_errors(page, errors)
        await page.goto(str(client.make_url("/")))  # a secure context, for the devices
        yield ChromiumAnswerer(page)
    assert errors == []


# --- a page whose answer is mutated ----------------------------------------------------


class MutatingParticipant(MediaParticipant):
    """A real aiortc participant whose first answer (or Chromium's to the same offer)
    is mutated on its way to the server, as a broken or hostile browser would send it."""

    def __init__(
        self, ws: ClientWebSocketResponse, changes: list[Mutation], answerer: Answerer | None
    ) -> None:
        super().__init__(ws, PAGE_SHADE)
        self._changes = changes
        self._answerer = answerer
        self._offer: dict[str, Any] = {}
        # The id of the message that carried the mutated answer, once sent.
        self.mutated: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def _answer(self, offer: dict[str, Any]) -> None:
        self._offer = offer
        await super()._answer(offer)

    async def send(self, type_: str, **fields: Any) -> int:
        if type_ != "answer" or self.mutated.done():
            return await super().send(type_, **fields)
        sdp = fields["sdp"] if self._answerer is None else await self._answerer.answer(self._offer)
        lines = sdp.split(CRLF)
        for change in self._changes:
            lines = change.apply(lines)
        fields["sdp"] = CRLF.join(lines)
        message_id = await super().send(type_, **fields)
        self.mutated.set_result(message_id)
        return message_id

    async def reply(self, message_id: int) -> dict[str, Any]:
        """The server's result or error for the message with this id."""
        while True:
            message = await asyncio.wait_for(self.messages.get(), RECEIVE_TIMEOUT)
            if message["type"] in ("result", "error") and message["id"] == message_id:
                return message

    async def settled(self) -> None:
        """Until the mutated answer's connection has connected or failed, or the server
        closed it (the page then has none), for SETTLE_SECONDS at most."""

        async def done() -> bool:
            if self._answerer is not None:
                return await self._answerer.settled()
            return self.pc is None or self.pc.connectionState in ("connected", "failed", "closed")

        with contextlib.suppress(TimeoutError):
            await wait_until(done, within=SETTLE_SECONDS)


@pytest.fixture
async def host(lobby: Lobby, join: Join) -> MediaParticipant:
    """Ada, in the started conference, sending and receiving media throughout."""
    ada = await join(lobby.host_path, HOST_SHADE)
    assert (await ada.request("start"))["type"] == "result"
    await enter(ada)
    return ada


async def answer_mutated(
    client: Client,
    lobby: Lobby,
    host: MediaParticipant,
    caplog: pytest.LogCaptureFixture,
    changes: list[Mutation],
    answerer: Answerer | None = None,
) -> None:
    """Pat's page joins media and answers (or has `answerer` answer) with `changes`
    made; the answer is taken or refused as bad_sdp; the page joins again, answers
    well itself, and receives the host."""
    caplog.set_level(logging.ERROR)
    logged_before = len(caplog.records)
    page = MutatingParticipant(await client.ws_connect(lobby.pat_path), changes, answerer)
    try:
        await page.hello()
        introduce([host, page])
        await enter(page)
        reply = await page.reply(await asyncio.wait_for(page.mutated, RECEIVE_TIMEOUT))
        assert reply["type"] == "result" or reply["code"] == "bad_sdp", reply
        if reply["type"] == "result":
            await page.settled()

        await enter(page)  # a new media connection, answered well this time

        async def receiving_the_host() -> bool:
            return all(page.frames[(host.id, kind)] > 0 for kind in ("audio", "video"))

        await wait_until(receiving_the_host)
    finally:
        await page.close()
    # What a task nobody awaited raised is logged once the task is collected.
    gc.collect()
    assert [r.getMessage() for r in caplog.records[logged_before:]] == []


@FUZZ
@given(data=st.data())
async def test_a_mutated_answer_is_taken_or_refused_and_the_page_joins_again(
    client: Client,
    lobby: Lobby,
    host: MediaParticipant,
    caplog: pytest.LogCaptureFixture,
    answerer: Answerer | None,
    data: st.DataObject,
) -> None:
    changes = data.draw(st.lists(mutations, min_size=1, max_size=4), label="mutations")
    await answer_mutated(client, lobby, host, caplog, changes, answerer)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            [Mutation("a=group:BUNDLE", at=0, to=1, text="- 0")],
            id="bundle-names-unknown-mid",
        ),
    ],
)
async def test_answers_the_fuzzing_found_are_refused_and_the_page_joins_again(
    client: Client,
    lobby: Lobby,
    host: MediaParticipant,
    caplog: pytest.LogCaptureFixture,
    changes: list[Mutation],
) -> None:
    """Answers the fuzzing found the server failing on."""
    await answer_mutated(client, lobby, host, caplog, changes)
