"""The SFU's per-packet forwarding, as a subscriber's own aiortc end sees it: a video
packet lost on the way is sent again, a publisher whose sequence numbers wrap past
65535 keeps being seen, and a tile that shows one camera, then another, gets one
stream. Real peers (tests/media_peers.py) in a real conference, on 127.0.0.1; what
arrives is read off the subscriber's network before SRTP (the RTP header travels in
the clear) and off its receiver after it."""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiortc import RTCRtpCodecParameters, RTCRtpSender, rtcrtpsender
from aiortc.rtp import is_rtcp

from ...support.lobby import Lobby
from ...support.media_peers import (
    BOTH,
    FRAMES_PER_SECOND,
    Join,
    MediaParticipant,
    enter,
    introduce,
    of,
    receive_exactly,
)
from ...support.servers import Client, wait_until

# A frame of the flat test cameras fits one packet: this many packets are this many
# frames, at FRAMES_PER_SECOND.
BEFORE_THE_WRAP = 6 * FRAMES_PER_SECOND
# Consecutive packets of one stream differ by one; loopback may lose a few.
MOST_SKIPPED = 10


class WatchedParticipant(MediaParticipant):
    """A participant that also sees what reaches its video m-lines: the RTP packets
    off its network (`on_wire`, before SRTP and before anything could drop them) and
    the retransmissions its receiver unwraps (`resent`). `lose_next` makes the
    network lose one packet of an m-line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # mid -> the SSRCs its media (not its retransmissions) came with.
        self.ssrcs: defaultdict[str, set[int]] = defaultdict(set)
        # (SSRC, sequence number) of every RTP packet off the network, in order.
        self.on_wire: list[tuple[int, int]] = []
        # mid -> the sequence numbers retransmitted on it (RTX: the original's first).
        self.resent: defaultdict[str, list[int]] = defaultdict(list)
        # The sequence number the network lost, once it has.
        self.lost: int | None = None
        self._lose: str | None = None
        self._tapped: set[int] = set()

    def lose_next(self, mid: str) -> None:
        """The network loses the next media packet arriving for `mid`."""
        self._lose, self.lost = mid, None

    def sequence_numbers(self, mid: str) -> list[int]:
        """What came for `mid` off the network, in the order it came."""
        return [seq for ssrc, seq in self.on_wire if ssrc in self.ssrcs[mid]]

    def _watch_packets(self, mid: str, receiver: Any, retransmission_types: set[int]) -> None:
        super()._watch_packets(mid, receiver, retransmission_types)
        receive = receiver._handle_rtp_packet

        async def watched(packet: Any, arrival_time_ms: int) -> None:
            if packet.payload_type in retransmission_types:
                if len(packet.payload) >= 2:
                    self.resent[mid].append(int.from_bytes(packet.payload[:2], "big"))
            else:
                self.ssrcs[mid].add(packet.ssrc)
            await receive(packet, arrival_time_ms)

        receiver._handle_rtp_packet = watched
        # One network for every m-line (BUNDLE): aioice hands it each datagram.
        self._tap(receiver.transport.transport._connection)

    def _tap(self, connection: Any) -> None:
        if id(connection) in self._tapped:
            return
        self._tapped.add(id(connection))
        deliver = connection.data_received

        def received(data: bytes, component: int) -> None:
            if len(data) >= 12 and 127 < data[0] < 192 and not is_rtcp(data):
                ssrc = int.from_bytes(data[8:12], "big")
                seq = int.from_bytes(data[2:4], "big")
                self.on_wire.append((ssrc, seq))
                if self._lose is not None and ssrc in self.ssrcs[self._lose]:
                    self._lose, self.lost = None, seq
                    return
            deliver(data, component)

        connection.data_received = received


JoinWatched = Callable[..., Awaitable[WatchedParticipant]]


@pytest.fixture
async def join_watched(client: Client) -> AsyncIterator[JoinWatched]:
    """As `join`, for a participant who watches its video m-lines."""
    opened: list[WatchedParticipant] = []

    async def join_(path: str, shade: int, **hello: Any) -> WatchedParticipant:
        participant = WatchedParticipant(await client.ws_connect(path), shade)
        opened.append(participant)
        await participant.hello(**hello)
        return participant

    yield join_
    for participant in opened:
        await participant.close()


def video_mid(subscriber: MediaParticipant, publisher: MediaParticipant) -> str | None:
    """The m-line on which the server says `subscriber` receives `publisher`'s video."""
    return next(
        (
            mid
            for mid, track in subscriber.tracks.items()
            if track["participant"] == publisher.id and track["kind"] == "video"
        ),
        None,
    )


async def frames_of(
    subscriber: MediaParticipant, publisher: MediaParticipant, count: int, within: float = 10.0
) -> None:
    """`subscriber` has decoded `count` pictures of `publisher` in all (each of the
    right shade), `within` seconds from now."""

    async def decoded() -> bool:
        return subscriber.frames[(publisher.id, "video")] >= count

    await wait_until(decoded, within=within)


async def in_a_call(host: MediaParticipant, patient: MediaParticipant) -> None:
    """The host starts the conference, both join its media, and the patient has
    decoded pictures of the host."""
    assert (await host.request("start"))["type"] == "result"
    introduce([host, patient])
    for participant in (host, patient):
        await enter(participant)
    await frames_of(patient, host, 10)


async def test_a_video_packet_lost_on_the_way_is_sent_again(
    lobby: Lobby, join: Join, join_watched: JoinWatched
) -> None:
    """The network loses one packet of the host's picture on its way to Pat: the
    server sends it again when Pat's end asks (NACK, answered with RTX), and Pat's
    picture of the host goes on. A server that did not answer would leave Pat's
    picture frozen until the host's next keyframe, seconds later."""
    host = await join(lobby.host_path, 50)
    patient = await join_watched(lobby.pat_path, 120)
    await in_a_call(host, patient)
    mid = video_mid(patient, host)
    assert mid is not None

    patient.lose_next(mid)

    async def lost() -> bool:
        return patient.lost is not None

    await wait_until(lost, within=5.0)
    at_the_loss = patient.frames[(host.id, "video")]

    async def sent_again() -> bool:
        return patient.lost in patient.resent[mid]

    await wait_until(sent_again, within=5.0)
    # No freeze: a second's worth of pictures more within three, where aiortc's
    # jitter buffer would hold every one behind the hole for 128 packets (8 s here).
    await frames_of(patient, host, at_the_loss + FRAMES_PER_SECOND, within=3.0)
    assert patient.wrong_pictures == 0


def start_near_the_wrap(
    monkeypatch: pytest.MonkeyPatch, publisher: MediaParticipant
) -> list[RTCRtpSender]:
    """Make `publisher`'s camera start BEFORE_THE_WRAP packets before sequence
    number 0; returns its sender once it sends.

    aiortc draws a stream's first sequence number below 32768 on purpose (see
    `rtcrtpsender.random_sequence_number`), so that its own streams never wrap within
    minutes, and has no setting for it: the number is a local of the sender's
    `_run_rtp`, drawn as its first step. The publisher is the test's own peer, so its
    video sender alone draws a number near 65535 instead, once: the draw is replaced
    just for that first step."""
    run_rtp = RTCRtpSender._run_rtp
    started: list[RTCRtpSender] = []

    async def near_the_wrap(sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
        pc = publisher.pc
        if sender.kind == "video" and pc is not None and sender in pc.getSenders():
            draw = rtcrtpsender.random_sequence_number

            def once() -> int:
                setattr(rtcrtpsender, "random_sequence_number", draw)  # noqa: B010
                started.append(sender)  # (none, if aiortc no longer draws it here)
                return 0x10000 - BEFORE_THE_WRAP

            setattr(rtcrtpsender, "random_sequence_number", once)  # noqa: B010
        await run_rtp(sender, codec)

    monkeypatch.setattr(RTCRtpSender, "_run_rtp", near_the_wrap)
    return started


async def packets_sent(sender: RTCRtpSender) -> int:
    stats = await sender.getStats()
    return sum(
        int(getattr(s, "packetsSent", 0)) for s in stats.values() if s.type == "outbound-rtp"
    )


async def test_a_camera_whose_sequence_numbers_wrap_is_still_seen(
    lobby: Lobby, join: Join, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's camera numbers its packets from just below 65535: Pat sees the
    host before the numbers start over at 0 and goes on seeing the host after. A
    server comparing sequence numbers without their wrap would drop everything after
    0 as old, or take it for a new stream and wait for a keyframe: a frozen picture."""
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    started = start_near_the_wrap(monkeypatch, host)
    assert (await host.request("start"))["type"] == "result"
    introduce([host, patient])
    for participant in (host, patient):
        await enter(participant)

    # Until a few packets before 65535: whatever Pat decoded by then came before the wrap.
    async def nearly_wrapped() -> bool:
        return bool(started) and await packets_sent(started[0]) >= BEFORE_THE_WRAP - 5

    await wait_until(nearly_wrapped, within=15.0)
    before = patient.frames[(host.id, "video")]
    assert before >= 5, "Pat saw nothing of the host before the wrap"

    async def wrapped() -> bool:
        return await packets_sent(started[0]) > BEFORE_THE_WRAP

    await wait_until(wrapped, within=5.0)
    # Well after it: three seconds of pictures, more than were on the way at the wrap.
    await frames_of(patient, host, before + 3 * FRAMES_PER_SECOND)
    assert patient.wrong_pictures == 0


def largest_skip(sequence_numbers: list[int]) -> int:
    """How far apart two packets that came one after the other are numbered, at
    most (wrapping at 65536, either way)."""
    skips = [
        abs(((b - a + 0x8000) & 0xFFFF) - 0x8000) for a, b in itertools.pairwise(sequence_numbers)
    ]
    return max(skips, default=0)


async def test_a_tile_that_shows_another_camera_keeps_one_stream(
    lobby: Lobby, join: Join, join_watched: JoinWatched
) -> None:
    """Moderator mode: the host shows Gail (a guest) to Pat; Gail hangs up, and the
    host shows Gus instead, on the m-line that carried Gail. Pat's end sees one
    stream on it: sequence numbers go on one by one across the change, so Pat's
    browser never takes Gus's packets for a late or a foreign stream (a jump would
    freeze the tile or drop Gus's first picture); and the tile shows Gus."""
    host = await join(lobby.host_path, 50)
    patient = await join_watched(lobby.pat_path, 120)
    gail = await join(lobby.public_path, 200, display_name="Gail Guest")
    gus = await join(lobby.public_path, 160, display_name="Gus Guest")
    everyone = [host, patient, gail, gus]
    assert (await host.request("set_options", moderator=True, recording=False))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    introduce(everyone)
    for participant in everyone:
        await enter(participant)
    for guest in (gail, gus):
        await host.request("set_permission", participant=guest.id, permission="audio_video")
    await host.request("set_shown", participant=gail.id, shown=True)
    await receive_exactly({patient: of((host, BOTH), (gail, BOTH), (gus, ("audio",)))})
    await frames_of(patient, gail, FRAMES_PER_SECOND)
    mid = video_mid(patient, gail)
    assert mid is not None

    await gail.send("leave")

    async def gone() -> bool:
        return video_mid(patient, gail) is None

    await wait_until(gone, within=10.0)
    of_gail = len(patient.sequence_numbers(mid))
    await host.request("set_shown", participant=gus.id, shown=True)

    async def shown() -> bool:
        return video_mid(patient, gus) is not None

    await wait_until(shown, within=10.0)
    assert video_mid(patient, gus) == mid, "Gus came on another m-line than Gail's"
    # Gail's last picture may still be decoding as the page learns that the m-line
    # is Gus's (and counts as a wrong picture): from Gus's first one on, all are his.
    await frames_of(patient, gus, 1)
    wrong = patient.wrong_pictures
    await frames_of(patient, gus, 1 + FRAMES_PER_SECOND)
    assert patient.wrong_pictures == wrong

    carried = patient.sequence_numbers(mid)
    assert of_gail >= FRAMES_PER_SECOND and len(carried) - of_gail >= FRAMES_PER_SECOND, carried
    assert largest_skip(carried) < MOST_SKIPPED, carried


async def remote_sent(subscriber: MediaParticipant, mid: str) -> dict[str, int]:
    """What the server's sender reports say it sent on `mid`, as the subscriber's
    receiver keeps them (its remote-outbound-rtp statistics)."""
    pc = subscriber.pc
    assert pc is not None
    [transceiver] = [t for t in pc.getTransceivers() if t.mid == mid]
    stats = await transceiver.receiver.getStats()
    counts = {"remote-outbound-rtp": "packetsSent", "inbound-rtp": "packetsReceived"}
    return {s.type: int(getattr(s, counts[s.type])) for s in stats.values() if s.type in counts}


async def test_the_server_reports_what_it_sent_on_every_m_line(lobby: Lobby, join: Join) -> None:
    """Each of Pat's m-lines gets the server's sender reports (the clock that lines up
    picture and sound, and how much was sent), several streams' in one packet: Pat's
    receiver knows, for the host's picture and for the host's sound, about as many
    packets sent as it received."""
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    await in_a_call(host, patient)
    mids = [mid for mid, track in patient.tracks.items() if track["participant"] == host.id]
    assert len(mids) == 2  # picture and sound

    async def reported() -> bool:
        for mid in mids:
            seen = await remote_sent(patient, mid)
            sent, received = seen.get("remote-outbound-rtp", 0), seen.get("inbound-rtp", 0)
            if not (sent > 0 and received > 0 and sent >= received * 0.5):
                return False
        return True

    await wait_until(reported, within=5.0)


async def test_stray_datagrams_at_the_media_port_change_nothing(
    lobby: Lobby, join: Join, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can send UDP to the server's media port: datagrams that look like RTP
    (too short, truncated, forged without the SRTP key) are dropped, and Pat's
    picture of the host goes on, with nothing logged as an error."""
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    await in_a_call(host, patient)
    assert patient.pc is not None
    # Where the host's end sends its media: the server's side of its candidate pair
    # (the test's own aiortc peer, read from its aioice connection).
    [transceiver, *_] = host.pc.getTransceivers() if host.pc else []
    pair = transceiver.sender.transport.transport._connection._nominated[1]
    server = pair.remote_addr
    forged = bytes([0x80, 0x60]) + bytes(10) + secrets.token_bytes(200)
    stray = [b"\x80", b"\x80\x60", bytes([0x90, 0x60]) + bytes(12), forged, b"\xbf" * 1500]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in stray * 20:
            sender.sendto(datagram, server)
    before = patient.frames[(host.id, "video")]
    await frames_of(patient, host, before + FRAMES_PER_SECOND, within=3.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_how_loud_the_host_is_comes_through_with_the_sound(lobby: Lobby, join: Join) -> None:
    """Each of the host's sound packets reaches Pat with the level the host's end
    measured (RFC 6464: what a browser shows as someone's loudness, and what tells
    who is speaking), not a "silence" the server made up."""
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    await in_a_call(host, patient)
    assert patient.pc is not None
    [mid] = [
        mid
        for mid, track in patient.tracks.items()
        if track["participant"] == host.id and track["kind"] == "audio"
    ]
    [receiver] = [t.receiver for t in patient.pc.getTransceivers() if t.mid == mid]
    levels: list[tuple[bool, int] | None] = []
    receive = receiver._handle_rtp_packet

    async def noted(packet: Any, arrival_time_ms: int) -> None:
        levels.append(packet.extensions.audio_level)
        await receive(packet, arrival_time_ms)

    receiver._handle_rtp_packet = noted  # type: ignore[method-assign]

    async def heard() -> bool:
        return len(levels) >= 25

    await wait_until(heard, within=5.0)
    # The host's microphone plays a steady tone: loud, far from 127 (-127 dBov).
    assert all(level is not None and level[1] < 100 for level in levels), levels
