"""One frozen Settings object, built once: embedded defaults < TOML file < environment < flags."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

ENV_PREFIX: Final = "CLINICCONF_"

SmtpSecurity = Literal["starttls", "tls", "none"]
Forwarding = Literal["packets", "transcode"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The STUN and TURN URL forms aiortc uses (aiortc/rtcicetransport.py connection_kwargs):
# it silently skips others (stuns:, turns: over udp, another transport), which would
# leave a clinic behind NAT without the relay it configured.
_STUN_URL: Final = re.compile(r"stun:[A-Za-z0-9.-]+(:(?P<port>[0-9]{1,5}))?")
_TURN_URL: Final = re.compile(
    r"(?P<scheme>turns?):[A-Za-z0-9.-]+(:(?P<port>[0-9]{1,5}))?"
    r"(\?transport=(?P<transport>udp|tcp))?"
)


class ConfigError(Exception):
    """A setting is missing, malformed or contradicts another one."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # The address patients and staff reach the server at; every link starts with it.
    # Empty means http://host:port, which is only right on the clinic's own machine.
    base_url: str = ""
    time_zone: str = "UTC"
    # A join link opens this many minutes before the event starts, and closes at its end.
    join_window_minutes: int = 15
    # A person whose last page closes stays present this long, so that a reload or a
    # network drop that reconnects in time changes nothing for the others.
    presence_grace_seconds: int = 15
    # Automatic logoff (HIPAA 164.312(a)(2)(iii)): a staff member's browser session ends
    # after this many minutes without a request. Activity is recorded at most once a
    # minute, so the session ends between N-1 and N minutes after the last request.
    session_idle_minutes: int = 15
    # Comma-separated addresses or networks of the reverse proxies in front of the
    # server. A request from one of them is taken to come from the address its
    # X-Forwarded-For names (the nearest not itself a trusted proxy): guessing limits
    # and removals then count each client, not the proxy everyone shares.
    trusted_proxies: str = ""
    # Region assumed for phone numbers typed without a country code.
    phone_region: str = "US"
    log_level: str = "INFO"

    # No SMTP host: emails are not sent but saved under data_dir/undelivered/.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_security: SmtpSecurity = "starttls"
    smtp_sender: str = "clinicconf@localhost"
    # A CA bundle to trust for the SMTP server's certificate (a clinic's own CA, or a test's).
    smtp_ca_file: str = ""

    # No Vonage key: text messages are not sent but saved under data_dir/undelivered/.
    vonage_api_key: str = ""
    vonage_api_secret: str = field(default="", repr=False)
    vonage_sender_id: str = "clinicconf"
    # host[:port] replacing rest.nexmo.com, for a local stand-in in tests.
    vonage_rest_host: str = ""

    # Comma-separated addresses the SFU offers browsers as host candidates. Empty means
    # every non-loopback interface (aioice's default); behind NAT, the address browsers reach.
    ice_addresses: str = ""
    # The UDP ports the SFU's host candidates use, for a firewall; both 0 means any port.
    ice_port_min: int = 0
    ice_port_max: int = 0
    # No STUN or TURN server: no outside server is ever contacted.
    stun_url: str = ""
    turn_url: str = ""
    # The shared secret of a TURN server with TURN REST credentials (coturn's
    # use-auth-secret); clinicconf hands out credentials that expire after turn_credential_hours.
    turn_secret: str = field(default="", repr=False)
    turn_credential_hours: int = 12

    # "packets": the SFU forwards what it receives as it is; "transcode": it decodes
    # each video and encodes it again for each receiver (costly; a benchmark baseline).
    forwarding: Forwarding = "packets"
    # The most a participant's camera may send, in bits per second (REMB feedback):
    # there is one stream per camera, so this is also what each receiver gets.
    max_video_bitrate: int = 1_500_000

    @property
    def public_base_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def session_idle(self) -> timedelta:
        return timedelta(minutes=self.session_idle_minutes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "clinicconf.sqlite3"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def undelivered_dir(self) -> Path:
        return self.data_dir / "undelivered"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)

    @property
    def vonage_configured(self) -> bool:
        return bool(self.vonage_api_key)

    @functools.cached_property  # read on every request
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.trusted_proxies.split(",")
            if part.strip()
        )

    @property
    def ice_address_list(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.ice_addresses.split(",") if part.strip())

    def validate(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"time_zone: unknown time zone {self.time_zone!r}") from exc
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url: must start with http:// or https://")
        if self.smtp_security not in typing.get_args(SmtpSecurity):
            raise ConfigError("smtp_security: must be one of starttls, tls, none")
        if self.vonage_configured and not self.vonage_api_secret:
            raise ConfigError("vonage_api_secret: required with vonage_api_key")
        if not 0 <= self.join_window_minutes <= 24 * 60:
            raise ConfigError("join_window_minutes: must be between 0 and 1440")
        if not 0 <= self.presence_grace_seconds <= 300:
            raise ConfigError("presence_grace_seconds: must be between 0 and 300")
        # From 2: at 1, a minute's lag in recording activity could end an active session.
        # Up to 720: the 12 hours every session ends after anyway.
        if not 2 <= self.session_idle_minutes <= 720:
            raise ConfigError("session_idle_minutes: must be between 2 and 720")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError("log_level: must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        try:
            proxies = self.trusted_proxy_networks
        except ValueError as exc:
            raise ConfigError(f"trusted_proxies: {exc}") from exc
        if any(network.prefixlen == 0 for network in proxies):
            raise ConfigError("trusted_proxies: a /0 network would believe every client")
        if self.phone_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError("phone_region: must be a two-letter region code such as US or GB")
        self._validate_ice()
        if self.forwarding not in typing.get_args(Forwarding):
            raise ConfigError("forwarding: must be packets or transcode")
        if not 100_000 <= self.max_video_bitrate <= 10_000_000:
            raise ConfigError("max_video_bitrate: must be between 100000 and 10000000")

    def _validate_ice(self) -> None:
        for address in self.ice_address_list:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError as exc:
                raise ConfigError(f"ice_addresses: {address!r} is not an IP address") from exc
            if parsed.is_unspecified:
                raise ConfigError(f"ice_addresses: {address} is not an address browsers can reach")
        if (self.ice_port_min, self.ice_port_max) != (0, 0) and not (
            1024 <= self.ice_port_min <= self.ice_port_max <= 65535
        ):
            raise ConfigError(
                "ice_port_min, ice_port_max: set both (1024 <= min <= max <= 65535) or neither"
            )
        stun = _STUN_URL.fullmatch(self.stun_url)
        if self.stun_url and not (stun and _port_in_range(stun)):
            raise ConfigError("stun_url: must look like stun:host:port")
        turn = _TURN_URL.fullmatch(self.turn_url)
        if self.turn_url and not (
            turn
            and _port_in_range(turn)
            and not (turn["scheme"] == "turns" and turn["transport"] == "udp")
        ):
            raise ConfigError(
                "turn_url: must look like turn:host:port, turn:host:port?transport=tcp"
                " or turns:host:port?transport=tcp"
            )
        if self.turn_url and not self.turn_secret:
            raise ConfigError("turn_secret: required with turn_url")
        if not 1 <= self.turn_credential_hours <= 168:
            raise ConfigError("turn_credential_hours: must be between 1 and 168")


def _port_in_range(url: re.Match[str]) -> bool:
    return url["port"] is None or 1 <= int(url["port"]) <= 65535


_FIELD_TYPES: Final = typing.get_type_hints(Settings)


def _convert(name: str, raw: Any) -> Any:
    """Turn a TOML, environment or flag value into the type the field declares."""
    kind = _FIELD_TYPES[name]
    if kind is int:
        if isinstance(raw, bool):  # TOML's true is not a port number
            raise ConfigError(f"{name}: {raw!r} is not a whole number")
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {raw!r} is not a whole number") from exc
    if kind is Path:
        return Path(raw)
    return str(raw)


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            table = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
        unknown = set(table) - set(setting_names())
        if unknown:
            raise ConfigError(f"{config_file}: unknown settings {', '.join(sorted(unknown))}")
        values.update(table)
    for name in setting_names():
        env_value = (environ or {}).get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = Settings(**{name: _convert(name, raw) for name, raw in values.items()})
    settings.validate()
    return settings
