"""ICE settings: the addresses and ports the SFU offers, TURN REST credentials, and no
outside STUN server unless one is configured. Peers talk over 127.0.0.1 only; nothing
here gathers with a STUN or TURN server configured."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCBundlePolicy, RTCDataChannel, RTCPeerConnection
from aiortc.rtcicetransport import RTCIceGatherer

from clinicconf.config import ConfigError, Settings, load_settings
from clinicconf.sfu import ice

# Below Linux's ephemeral range (32768-60999), so that no socket bound to port 0 lands
# here by chance and a port outside it shows that no range is applied.
PORT_MIN = 29400
PORT_MAX = 29419
WAIT_SECONDS = 30
# Taken at collection, before any test has called install().
AIOICE_HOST_ADDRESSES = aioice.ice.get_host_addresses

Install = Callable[[Settings], None]


@pytest.fixture
def install_ice() -> Iterator[Install]:
    yield ice.install
    ice.install(Settings())  # aioice's own behaviour again for the rest of the suite


def ice_settings(**values: Any) -> Settings:
    return load_settings(overrides=values)


def candidates(pc: RTCPeerConnection) -> list[tuple[str, int]]:
    """(address, port) of each candidate in pc's local description."""
    lines = pc.localDescription.sdp.splitlines()
    fields = [line.split() for line in lines if line.startswith("a=candidate:")]
    return [(parts[4], int(parts[5])) for parts in fields]


async def offer_with_candidates(settings: Settings) -> list[tuple[str, int]]:
    pc = RTCPeerConnection(ice.server_configuration(settings))
    try:
        pc.createDataChannel("probe")
        await pc.setLocalDescription(await pc.createOffer())  # gathers
        return candidates(pc)
    finally:
        await pc.close()


async def test_host_candidates_only_on_the_configured_address(install_ice: Install) -> None:
    settings = ice_settings(ice_addresses="127.0.0.1")
    install_ice(settings)
    found = await offer_with_candidates(settings)
    assert found
    assert {address for address, _ in found} == {"127.0.0.1"}


async def test_host_candidates_skip_a_busy_port_of_the_range(install_ice: Install) -> None:
    settings = ice_settings(ice_addresses="127.0.0.1", ice_port_min=PORT_MIN, ice_port_max=PORT_MAX)
    install_ice(settings)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", PORT_MIN))
        found = await offer_with_candidates(settings)
    assert found
    assert all(PORT_MIN < port <= PORT_MAX for _, port in found)


async def test_two_peers_in_the_port_range_connect_and_talk(install_ice: Install) -> None:
    settings = ice_settings(ice_addresses="127.0.0.1", ice_port_min=PORT_MIN, ice_port_max=PORT_MAX)
    install_ice(settings)
    caller = RTCPeerConnection(ice.server_configuration(settings))
    callee = RTCPeerConnection(ice.server_configuration(settings))
    loop = asyncio.get_running_loop()
    connected = {pc: loop.create_future() for pc in (caller, callee)}
    received: asyncio.Future[object] = loop.create_future()

    def watch(pc: RTCPeerConnection) -> None:
        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState in ("connected", "failed") and not connected[pc].done():
                connected[pc].set_result(pc.connectionState)

    @callee.on("datachannel")
    def opened(channel: RTCDataChannel) -> None:
        channel.on("message", received.set_result)

    try:
        watch(caller)
        watch(callee)
        channel = caller.createDataChannel("chat")
        channel.on("open", lambda: channel.send("hello over the range"))
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)

        ports = [port for pc in (caller, callee) for _, port in candidates(pc)]
        assert ports
        assert all(PORT_MIN <= port <= PORT_MAX for port in ports)
        async with asyncio.timeout(WAIT_SECONDS):
            assert await asyncio.gather(*connected.values()) == ["connected", "connected"]
            assert await received == "hello over the range"
    finally:
        await caller.close()
        await callee.close()


async def test_a_later_install_replaces_the_port_range(install_ice: Install) -> None:
    install_ice(
        ice_settings(ice_addresses="127.0.0.1", ice_port_min=PORT_MIN, ice_port_max=PORT_MAX)
    )
    settings = ice_settings(ice_addresses="127.0.0.1")
    install_ice(settings)
    found = await offer_with_candidates(settings)
    assert found
    assert not any(PORT_MIN <= port <= PORT_MAX for _, port in found)


def test_default_settings_restore_aioices_own_addresses(install_ice: Install) -> None:
    install_ice(ice_settings(ice_addresses="127.0.0.1"))
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    install_ice(Settings())
    own = AIOICE_HOST_ADDRESSES(use_ipv4=True, use_ipv6=True)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == own


def test_configured_addresses_follow_aioices_ip_version_choice(install_ice: Install) -> None:
    install_ice(ice_settings(ice_addresses="127.0.0.1,::1"))
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]


async def test_nothing_configured_means_no_ice_servers_at_all() -> None:
    settings = Settings()
    configuration = ice.server_configuration(settings)
    assert configuration.iceServers == []
    assert configuration.bundlePolicy == RTCBundlePolicy.MAX_BUNDLE
    # Constructed only: aiortc would otherwise fall back to Google's STUN server.
    connection = RTCIceGatherer(iceServers=configuration.iceServers)._connection
    assert connection.stun_server is None and connection.turn_server is None
    assert ice.browser_ice_servers(settings, "p-7f3a") == []


@pytest.mark.parametrize(
    ("turn_url", "server", "ssl", "transport"),
    [
        ("turn:turn.clinic.example", ("turn.clinic.example", 3478), False, "udp"),
        (
            "turn:turn.clinic.example:3479?transport=tcp",
            ("turn.clinic.example", 3479),
            False,
            "tcp",
        ),
        (
            "turns:turn.clinic.example:5349?transport=tcp",
            ("turn.clinic.example", 5349),
            True,
            "tcp",
        ),
    ],
)
async def test_aiortc_takes_the_configured_stun_and_turn_servers(
    turn_url: str, server: tuple[str, int], ssl: bool, transport: str
) -> None:
    settings = ice_settings(
        stun_url="stun:stun.clinic.example:3478", turn_url=turn_url, turn_secret="s3cret"
    )
    issued_after = int(time.time())
    # Constructed only, never gathered: no STUN or TURN server is contacted.
    connection = RTCIceGatherer(
        iceServers=ice.server_configuration(settings).iceServers
    )._connection
    assert connection.stun_server == ("stun.clinic.example", 3478)
    assert connection.turn_server == server
    assert (connection.turn_ssl, connection.turn_transport) == (ssl, transport)
    expiry, user = connection.turn_username.split(":")
    assert user == ice.SERVER_TURN_USER
    assert int(expiry) >= issued_after + 12 * 3600
    assert connection.turn_password == independent_password("s3cret", connection.turn_username)


def independent_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    username, password = ice.turn_credentials("coturn-shared-secret", "p-7f3a", 1767268800)
    assert username == "1767268800:p-7f3a"
    assert password == independent_password("coturn-shared-secret", username)
    # printf '1767268800:p-7f3a' | openssl dgst -sha1 -hmac coturn-shared-secret -binary | base64
    assert password == "H+hhR/zjf6IDXta8g4CevekNr2M="


def test_browser_ice_servers_carry_credentials_expiring_after_the_configured_hours() -> None:
    settings = ice_settings(
        stun_url="stun:stun.clinic.example:3478",
        turn_url="turn:turn.clinic.example:3478?transport=udp",
        turn_secret="coturn-shared-secret",
        turn_credential_hours=12,
    )
    servers = ice.browser_ice_servers(settings, "p-7f3a", now=lambda: 1767225600.5)
    assert servers == [
        {"urls": ["stun:stun.clinic.example:3478"]},
        {
            "urls": ["turn:turn.clinic.example:3478?transport=udp"],
            "username": "1767268800:p-7f3a",  # 2026-01-01T00:00Z plus 12 hours
            "credential": "H+hhR/zjf6IDXta8g4CevekNr2M=",
        },
    ]


def test_turn_secret_stays_out_of_the_settings_repr() -> None:
    settings = ice_settings(turn_url="turn:turn.clinic.example", turn_secret="s3cret")
    assert "s3cret" not in repr(settings)


def test_ice_addresses_from_the_environment() -> None:
    settings = load_settings(None, {"CLINICCONF_ICE_ADDRESSES": "127.0.0.1, ::1"})
    assert settings.ice_address_list == ("127.0.0.1", "::1")
    assert Settings().ice_address_list == ()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CLINICCONF_ICE_ADDRESSES": "127.0.0.300"}, "ice_addresses"),
        ({"CLINICCONF_ICE_ADDRESSES": "127.0.0.1,clinic.example"}, "ice_addresses"),
        ({"CLINICCONF_ICE_ADDRESSES": "::"}, "ice_addresses"),  # any address: unreachable
        ({"CLINICCONF_ICE_PORT_MIN": "40000"}, "ice_port_min"),
        ({"CLINICCONF_ICE_PORT_MIN": "40010", "CLINICCONF_ICE_PORT_MAX": "40000"}, "ice_port"),
        ({"CLINICCONF_ICE_PORT_MIN": "80", "CLINICCONF_ICE_PORT_MAX": "90"}, "ice_port"),
        ({"CLINICCONF_ICE_PORT_MIN": "40000", "CLINICCONF_ICE_PORT_MAX": "70000"}, "ice_port"),
        ({"CLINICCONF_STUN_URL": "stuns:stun.clinic.example:5349"}, "stun_url"),
        ({"CLINICCONF_STUN_URL": "https://stun.clinic.example"}, "stun_url"),
        ({"CLINICCONF_STUN_URL": "stun:stun.clinic.example:99999"}, "stun_url"),
        ({"CLINICCONF_TURN_URL": "turn:turn.clinic.example"}, "turn_secret"),
        (
            {
                "CLINICCONF_TURN_URL": "turns:turn.clinic.example?transport=udp",
                "CLINICCONF_TURN_SECRET": "s",
            },
            "turn_url",
        ),
        (
            {
                "CLINICCONF_TURN_URL": "turn:turn.clinic.example?transport=tls",
                "CLINICCONF_TURN_SECRET": "s",
            },
            "turn_url",
        ),
        ({"CLINICCONF_TURN_CREDENTIAL_HOURS": "0"}, "turn_credential_hours"),
        ({"CLINICCONF_TURN_CREDENTIAL_HOURS": "169"}, "turn_credential_hours"),
    ],
)
def test_bad_ice_settings_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ)
