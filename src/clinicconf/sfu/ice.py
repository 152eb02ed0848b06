"""ICE for the SFU: the addresses and ports the server offers, and the STUN and TURN
servers it and the browsers use, and the datagrams of a connection once it is up.

aiortc leaves addresses and ports to aioice, which offers every non-loopback interface
on any UDP port and has no option for either (aioice issue #47). A clinic behind a
firewall or NAT needs both, and the tests need loopback only, so `install` reaches into
aioice for them; this module is the only place that does, so an aioice upgrade has one
file to check (docs/research/aiortc-sfu.md, section 2).

aiortc contacts Google's STUN server unless given a list of ICE servers, so every
configuration built here carries an explicit list, empty when none is configured.

A browser's answer names the addresses the server is to send connectivity checks to;
`BrowserAddresses` says which of them a browser can honestly have.

aioice sends and delivers each datagram through a chain of awaits and a queue, which
costs more than the forwarding itself; `Datagrams` sends on the nominated pair's
socket at once and hands media to the forwarding as it arrives (`RELIED_ON`, checked
at start-up with aiortc's, sfu/passthrough/).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import ipaddress
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from clinicconf.config import Settings
from clinicconf.page_messages import IceServer

# The TURN user the server's own peer connections authenticate as.
SERVER_TURN_USER: Final = "clinicconf-server"

# Captured at import, before any install(), so that the defaults can restore it.
_AIOICE_HOST_ADDRESSES: Final = aioice.ice.get_host_addresses

_Protocol = TypeVar("_Protocol", bound=asyncio.BaseProtocol)

# What `Datagrams` uses of an aioice Connection that is not its public API.
RELIED_ON: Final = {"Connection": ("_nominated", "_protocols", "data_received")}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# "This host on this network" (RFC 1122): Linux delivers what is sent to 0.0.0.0 to
# the host itself.
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")
_LIMITED_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


_SendTo = Callable[[bytes, tuple[str, int]], None]


class Datagrams:
    """One ICE connection's datagrams, below aiortc: sent on the nominated candidate
    pair at once, and media offered to `intercept`'s handler as it arrives."""

    def __init__(self, connection: aioice.ice.Connection) -> None:
        self._connection = connection
        # The nominated pair last sent on, its socket's send and the address it sends to.
        self._route: tuple[aioice.ice.CandidatePair, _SendTo, tuple[str, int]] | None = None

    def send(self, data: bytes) -> None:
        pair = self._connection._nominated.get(1)  # one component: RTP and RTCP muxed
        if pair is None:
            raise ConnectionError("not connected")
        route = self._route
        if route is None or route[0] is not pair:
            # What aioice's send does after its awaits, for a host pair and a relayed one.
            route = self._route = (pair, pair.protocol.transport.sendto, pair.remote_addr)
        route[1](data, route[2])

    def intercept(self, media: Callable[[bytes], bool]) -> None:
        """Offer every RTP and RTCP datagram (first byte 128-191, RFC 7983) to `media`
        first; what it does not take (returns False) goes on to aiortc as before.
        STUN and DTLS always go on."""
        connection = self._connection
        queue = connection.data_received

        def received(data: bytes, component: int) -> None:
            if not (data and 127 < data[0] < 192 and media(data)):
                queue(data, component)

        connection.data_received = received  # type: ignore[method-assign]
        # Media is never STUN: spare aioice's attempt to parse each datagram as a
        # STUN message (an exception per packet) before it hands it on.
        for protocol in connection._protocols:
            protocol.datagram_received = _media_first(  # type: ignore[method-assign,assignment]
                protocol.datagram_received, received, protocol.local_candidate.component
            )


def _media_first(
    stun: Callable[[bytes, tuple[Any, ...]], None],
    media: Callable[[bytes, int], None],
    component: int,
) -> Callable[[bytes, tuple[Any, ...]], None]:
    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:
            media(data, component)
        else:
            stun(data, addr)

    return datagram_received


class _HostAddresses(Protocol):
    """The signature of aioice.ice.get_host_addresses, which aioice calls by keyword."""

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


def install(settings: Settings) -> None:
    """Make aioice offer settings.ice_addresses on ports from the configured range, for
    every peer connection this process creates from now on. Each call replaces the
    previous one; with the default settings aioice behaves as its own again."""
    addresses = settings.ice_address_list
    aioice.ice.get_host_addresses = (
        _configured_host_addresses(addresses) if addresses else _AIOICE_HOST_ADDRESSES
    )
    # aioice.ice looks its asyncio module up at each call, so its view can be swapped.
    if settings.ice_port_min:
        ports = range(settings.ice_port_min, settings.ice_port_max + 1)
        vars(aioice.ice)["asyncio"] = _asyncio_binding_in(ports)
    else:
        vars(aioice.ice)["asyncio"] = asyncio


@dataclass(frozen=True)
class BrowserAddresses:
    """The addresses a browser's ICE candidate may name: those the server may send
    connectivity checks to. Refused: the server itself (loopback; its own media
    addresses, `own`) and what is no one browser's address (link-local, multicast,
    unspecified and broadcast addresses). When `own` includes loopback (tests, a
    laptop), the browsers are on the same machine and reach the server over loopback:
    then loopback candidates are accepted, the server's own included. Names are
    refused, mDNS ones (.local) too: resolving one would send a multicast query onto
    the clinic's network on a page's behalf and believe whichever host answers."""

    own: frozenset[IPAddress]

    @classmethod
    def besides(cls, own: Iterable[str]) -> BrowserAddresses:
        """Every address but the server's own addresses `own` and those above."""
        return cls(frozenset(_canonical(ipaddress.ip_address(address)) for address in own))

    def admit(self, host: str, port: int) -> bool:
        try:
            address = _canonical(ipaddress.ip_address(host))
        except ValueError:  # a name
            return False
        # A zone (fe80::1%eth0) names an interface of the machine that wrote it: no
        # browser's usable address has one, and it would make the server's own address
        # look like another's.
        if getattr(address, "scope_id", None) is not None:
            return False
        if not 1 <= port <= 65535:
            return False
        if address.is_loopback:
            return any(own.is_loopback for own in self.own)
        return not (
            address in self.own
            or address.is_link_local
            or address.is_multicast
            or address.is_unspecified
            or address in _THIS_NETWORK
            or address == _LIMITED_BROADCAST
        )


def _canonical(address: IPAddress) -> IPAddress:
    """An IPv4 address written as IPv6 (::ffff:127.0.0.1) is that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def turn_credentials(secret: str, user: str, expires_at: int) -> tuple[str, str]:
    """TURN REST credentials (coturn's use-auth-secret) for user, valid until expires_at
    (Unix seconds): the TURN server checks them with the shared secret alone."""
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def server_configuration(settings: Settings) -> RTCConfiguration:
    """The configuration of every server-side peer connection."""
    return RTCConfiguration(
        iceServers=_ice_servers(settings, SERVER_TURN_USER, _expiry(settings, time.time)),
        # The default BALANCED policy leaves a second same-kind transceiver without a
        # transport (aiortc issue #1414); with MAX_BUNDLE they all share one.
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


def browser_ice_servers(
    settings: Settings, participant: str, now: Callable[[], float] = time.time
) -> list[IceServer]:
    """The iceServers for a page's RTCPeerConnection. participant goes into the TURN
    username, which the TURN server logs: pass an opaque id, never a name."""
    servers: list[IceServer] = []
    for server in _ice_servers(settings, participant, _expiry(settings, now)):
        urls = server.urls if isinstance(server.urls, list) else [server.urls]
        entry: IceServer = {"urls": urls}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    return servers


def _ice_servers(settings: Settings, user: str, expires_at: int) -> list[RTCIceServer]:
    servers = []
    if settings.stun_url:
        servers.append(RTCIceServer(urls=[settings.stun_url]))
    if settings.turn_url:
        username, credential = turn_credentials(settings.turn_secret, user, expires_at)
        servers.append(
            RTCIceServer(urls=[settings.turn_url], username=username, credential=credential)
        )
    return servers


def _expiry(settings: Settings, now: Callable[[], float]) -> int:
    return int(now()) + settings.turn_credential_hours * 3600


def _configured_host_addresses(addresses: tuple[str, ...]) -> _HostAddresses:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        wanted = {4} if use_ipv4 else set()
        wanted |= {6} if use_ipv6 else set()
        return [address for address in addresses if ipaddress.ip_address(address).version in wanted]

    return get_host_addresses


def _asyncio_binding_in(ports: range) -> types.ModuleType:
    """A copy of the asyncio module for aioice.ice alone, whose running loop binds host
    sockets asked for any port to a port of the range instead. aioice's TURN and mDNS
    sockets live in other modules and are not affected."""
    view = types.ModuleType(asyncio.__name__)
    vars(view).update(vars(asyncio))
    vars(view)["get_running_loop"] = lambda: _LoopBindingIn(asyncio.get_running_loop(), ports)
    return view


class _LoopBindingIn:
    """The running loop, except that a datagram endpoint on port 0 takes the first free
    port of the range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: range) -> None:
        self._loop = loop
        self._ports = ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _Protocol],
        local_addr: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> tuple[asyncio.DatagramTransport, _Protocol]:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, **kwargs
            )
        host = local_addr[0]
        for port in self._ports:
            try:
                return await self._loop.create_datagram_endpoint(
                    protocol_factory, local_addr=(host, port), **kwargs
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        # aioice logs this and gathers no candidate on that address.
        raise OSError(
            errno.EADDRINUSE,
            f"no free UDP port in {self._ports.start}-{self._ports.stop - 1} on {host}",
        )
