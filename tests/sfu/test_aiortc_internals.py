"""Packet forwarding relies on parts of aiortc and aioice that are not their public
API (sfu/passthrough/, sfu/ice.py). These tests fail loudly, naming what changed, if an aiortc
release no longer has them; the server refuses to start in that case too."""

from __future__ import annotations

import aioice
import pytest
from aiohttp import web
from aiortc import RTCRtpReceiver, RTCRtpSender

from clinicconf.app import create_app
from clinicconf.config import Settings
from clinicconf.sfu.passthrough import AiortcChanged, verify_aiortc
from clinicconf.sfu.passthrough.rtp import keyframe_start


async def test_the_installed_aiortc_has_everything_packet_forwarding_uses() -> None:
    await verify_aiortc()


async def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # As an aiortc release without the sender's retransmission would be.
    monkeypatch.delattr(RTCRtpSender, "_retransmit")
    with pytest.raises(AiortcChanged, match=r"RTCRtpSender\._retransmit"):
        await verify_aiortc()


async def test_a_missing_aioice_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # As an aioice release that handed datagrams on another way would be: the fast
    # path would take no media from the connection.
    monkeypatch.delattr(aioice.Connection, "data_received")
    with pytest.raises(AiortcChanged, match=r"aioice Connection\.data_received"):
        await verify_aiortc()


async def test_a_changed_receive_handler_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handler(self: RTCRtpReceiver, packet: object) -> None:  # one argument fewer
        """What a release calling the handler differently would have."""

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", handler)
    with pytest.raises(AiortcChanged, match="_handle_rtp_packet"):
        await verify_aiortc()


async def test_the_server_does_not_start_with_an_aiortc_it_cannot_forward_with(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    runner = web.AppRunner(create_app(settings))
    with pytest.raises(AiortcChanged):
        await runner.setup()
    await runner.cleanup()


def test_a_vp8_keyframe_start_is_recognised() -> None:
    # RFC 7741 payload descriptor (S=1, PID=0, no extension), then the VP8 frame tag:
    # its lowest bit is 0 for a keyframe, 1 for an inter frame.
    assert keyframe_start(bytes([0x10, 0x50, 0x01, 0x00])) == bytes([0x50, 0x01, 0x00])
    assert keyframe_start(bytes([0x10, 0x51, 0x01, 0x00])) is None
    assert keyframe_start(bytes([0x00, 0x50, 0x01, 0x00])) is None  # not a partition start
    assert keyframe_start(b"") is None
