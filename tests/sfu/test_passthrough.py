"""Packet forwarding over a real aiortc connection, without a conference around it:
a subscriber's outlet fed packets directly, and what the other end receives."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
)
from aiortc.rtp import RtpPacket

from clinicconf.bench import clip
from clinicconf.config import Settings
from clinicconf.sfu import ice
from clinicconf.sfu.passthrough.outlet import PacketOutlet
from clinicconf.sfu.passthrough.rtp import Received, ntp_now
from clinicconf.sfu.passthrough.source import KEPT_KEYFRAME_PACKETS, PacketSource

from ..support.servers import wait_until

SOURCE_SSRC = 0x1234


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@pytest.fixture
async def audio_pair() -> AsyncIterator[tuple[RTCRtpTransceiver, RTCPeerConnection]]:
    """A sending audio m-line (the server's side) connected to a receiving peer."""
    server, browser = peer(), peer()
    try:
        yield await connect(server, browser), browser
    finally:
        await server.close()
        await browser.close()


async def connect(server: RTCPeerConnection, browser: RTCPeerConnection) -> RTCRtpTransceiver:
    """The server's sending audio m-line, negotiated with the browser and connected."""
    ice.install(Settings(ice_addresses="127.0.0.1"))
    transceiver = server.addTransceiver("audio", direction="sendonly")
    await server.setLocalDescription(await server.createOffer())
    await browser.setRemoteDescription(server.localDescription)
    await browser.setLocalDescription(await browser.createAnswer())
    await server.setRemoteDescription(browser.localDescription)

    async def connected() -> bool:
        return server.connectionState == browser.connectionState == "connected"

    await wait_until(connected, within=10.0)
    return transceiver


def count_arrivals(browser: RTCPeerConnection) -> set[int]:
    """Which of the packets sent reach the browser's end (by their timestamps, which
    the first stream keeps as sent); nothing is decoded."""
    arrived: set[int] = set()
    [transceiver] = browser.getTransceivers()

    async def count(packet: RtpPacket, arrival_time_ms: int) -> None:
        arrived.add(packet.timestamp // clip.AUDIO_FRAME_SAMPLES)

    transceiver.receiver._handle_rtp_packet = count  # type: ignore[method-assign]
    return arrived


async def test_a_long_stream_keeps_flowing_across_sequence_number_wraps(
    audio_pair: tuple[RTCRtpTransceiver, RTCPeerConnection],
) -> None:
    """Forty thousand packets (more than half the 16-bit sequence space, starting
    just before it wraps), as a few minutes of video would be: every one arrives.
    Both ends wrap: the source's numbers, and the outlet's own (with them its SRTP
    rollover counter), started near the wrap here: it draws its first at random
    below 32768, as aiortc does, which forty thousand packets would not always pass."""
    transceiver, browser = audio_pair
    outlet = PacketOutlet(transceiver, "audio")
    outlet._next_seq = 65_500
    arrived = count_arrivals(browser)
    [opus, *_] = clip.encode_audio(0.02)
    count, first = 40_000, 65_000
    for number in range(count):
        packet = Received(
            False, 96, (first + number) & 0xFFFF,
            (number * clip.AUDIO_FRAME_SAMPLES) & 0xFFFFFFFF, SOURCE_SSRC, opus,
        )  # fmt: skip
        outlet.forward(packet, False, ntp_now())
        if number % 10 == 9:
            await asyncio.sleep(0.001)  # let the other end read: it shares the loop

    # A few may be lost on loopback when the other end falls behind, but the end of
    # the stream comes through as its start did (with the sequence numbers
    # mishandled, nothing past the 32,768th would leave).
    async def the_end_arrived() -> bool:
        last = set(range(count - 2000, count))
        return len(arrived) >= count * 0.9 and len(arrived & last) >= len(last) * 0.9

    await wait_until(the_end_arrived, within=10.0)


async def test_nothing_of_a_closed_connection_is_kept() -> None:
    """Once a connection that was forwarded to is closed, nothing of it stays in
    memory: a server keeping every closed connection's transport would grow with
    every consultation of the day."""
    server, browser = peer(), peer()
    transceiver = await connect(server, browser)
    outlet = PacketOutlet(transceiver, "audio")
    [opus, *_] = clip.encode_audio(0.02)
    outlet.forward(Received(False, 96, 1, 0, SOURCE_SSRC, opus), False, ntp_now())
    assert outlet.has_sent
    transport = weakref.ref(transceiver.sender.transport)
    outlet.close()
    await server.close()
    await browser.close()
    del server, browser, transceiver, outlet
    gc.collect()
    assert transport() is None


async def test_a_keyframe_that_never_ends_is_not_gathered_without_bound() -> None:
    """A publisher may start a keyframe and then send crumbs of it forever: what the
    server gathers for the kept keyframe stays bounded, and the next whole keyframe
    is kept as usual."""
    pc = peer()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        source = PacketSource(transceiver, "video", bitrate_cap=1_000_000)
        start = bytes([0x10, 0x50, 0x01, 0x00])  # a VP8 keyframe's first packet
        source._keep(Received(False, 96, 0, 3000, SOURCE_SSRC, start), keyframe=True)
        for number in range(1, 5000):
            crumb = Received(False, 96, number, 3000, SOURCE_SSRC, b"\x00")
            source._keep(crumb, keyframe=False)
            assert len(source._keeping) <= KEPT_KEYFRAME_PACKETS
        assert source.kept_keyframe() == ()

        whole = [
            Received(False, 96, 6000, 9000, SOURCE_SSRC, start),
            Received(True, 96, 6001, 9000, SOURCE_SSRC, b"\x00" * 100),
        ]
        source._keep(whole[0], keyframe=True)
        source._keep(whole[1], keyframe=False)
        assert source.kept_keyframe() == tuple(whole)
    finally:
        await pc.close()
