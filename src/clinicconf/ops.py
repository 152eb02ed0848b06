"""Operator commands: `check`, whether an installation is ready to go live, and
`backup`, a consistent copy of what the server keeps while it runs
(docs/operations.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiosmtplib
import requests

from .config import Settings
from .db import BUSY_TIMEOUT_MS, to_db_time, utc_now
from .errors import Conflict, NotFound
from .notify.email import connection_options, network_reason, smtp_failure
from .owner_only import DIRECTORY_MODE, FILE_MODE, open_to_others, owner_only_directory

# Each outside server gets this long to answer: check runs them side by side.
CHECK_TIMEOUT_SECONDS: Final = 5.0
# Recordings are large: at the default max_video_bitrate one camera fills about
# 0.7 GB an hour.
LOW_FREE_SPACE_BYTES: Final = 5 * 10**9
CLOCK_TOLERANCE: Final = timedelta(seconds=60)
# Where Vonage's SDK sends its requests unless vonage_rest_host replaces it.
VONAGE_REST_HOST: Final = "rest.nexmo.com"
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

RECORDINGS_INDEX: Final = "recordings-index.json"

Verdict = Literal["ok", "warning", "problem"]


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    subject: str
    text: str  # what was found, and what to do about it

    def __str__(self) -> str:
        return f"{self.verdict:<8}{self.subject}: {self.text}"


# --- check ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An HTTPS server that answered (with any status): the host, and how far this
    machine's clock is ahead of the time in its Date header (None without one)."""

    host: str
    clock_ahead: timedelta | None


@dataclass(frozen=True)
class NoAnswer:
    host: str
    reason: str


Reached = Answer | NoAnswer


async def check(settings: Settings) -> int:
    """Print one line per finding and a summary; 1 when there is a problem."""
    findings = await run_checks(settings)
    for finding in findings:
        print(finding)
    problems = sum(f.verdict == "problem" for f in findings)
    warnings = sum(f.verdict == "warning" for f in findings)
    if problems:
        print(f"{_count(problems, 'problem')}, {_count(warnings, 'warning')}: fix the problems")
        return 1
    print(f"no problems, {_count(warnings, 'warning')}")
    return 0


async def run_checks(settings: Settings) -> list[Finding]:
    public_url = settings.public_base_url
    vonage_url = f"https://{settings.vonage_rest_host or VONAGE_REST_HOST}/"
    public, vonage, smtp = await asyncio.gather(
        _reach(public_url if public_url.startswith("https://") else None),
        _reach(vonage_url if settings.vonage_configured else None),
        _check_smtp(settings),
    )
    return [
        _check_base_url(public_url, public),
        _check_proxies(settings),
        _check_turn(settings),
        smtp,
        _check_vonage(settings, vonage),
        _check_data_dir(settings),
        _check_owner_only(settings),
        _check_free_space(settings),
        # Vonage's clock first: the public address may be a proxy on this very machine.
        _check_clock([r for r in (vonage, public) if isinstance(r, Answer)]),
    ]


async def _reach(url: str | None) -> Reached | None:
    """An HTTPS GET of `url`; None when there is nothing to reach."""
    if url is None:
        return None
    return await asyncio.to_thread(_reach_blocking, url)


def _reach_blocking(url: str) -> Reached:
    host = urlsplit(url).netloc
    try:
        # requests, as Vonage's SDK: what it trusts (REQUESTS_CA_BUNDLE too) is checked.
        with requests.get(url, timeout=CHECK_TIMEOUT_SECONDS, allow_redirects=False) as answer:
            date = answer.headers.get("Date")
    except requests.Timeout:
        return NoAnswer(host, f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s")
    except requests.RequestException as exc:
        return NoAnswer(host, network_reason(_innermost(exc)))
    received = datetime.now(UTC)
    try:
        return Answer(host, received - parsedate_to_datetime(date) if date else None)
    except (TypeError, ValueError):  # a Date header that is no date
        return Answer(host, None)


def _innermost(error: BaseException) -> BaseException:
    """The error at the bottom of requests' and urllib3's wrapping (a refused
    connection, an untrusted certificate)."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return error


def _check_base_url(url: str, reached: Reached | None) -> Finding:
    subject = "public base URL"
    to_go_live = (
        "put the server behind a TLS reverse proxy and set base_url to its https:// address"
    )
    match reached:
        case Answer():
            return Finding("ok", subject, f"{url} answered over HTTPS")
        case NoAnswer(reason=reason):
            return Finding(
                "warning",
                subject,
                f"{url} did not answer ({reason}): start the server and its reverse proxy,"
                " check the name, the firewall and the certificate, and run check again",
            )
    # Not reached: an http:// address.
    if urlsplit(url).hostname in _LOOPBACK_HOSTS:
        return Finding(
            "warning",
            subject,
            f"{url} has no TLS and works on this machine only: fine for trying clinicconf"
            f" out; to go live, {to_go_live}",
        )
    return Finding(
        "problem",
        subject,
        f"{url} has no TLS: join links, passwords and sessions would cross the network"
        f" readable by anyone on the way; {to_go_live}",
    )


def _check_proxies(settings: Settings) -> Finding:
    subject = "reverse proxy"
    if settings.trusted_proxies:
        return Finding(
            "ok", subject, f"the client addresses forwarded by {settings.trusted_proxies} count"
        )
    if settings.public_base_url.startswith("https://"):
        return Finding(
            "warning",
            subject,
            "none in trusted_proxies: if a reverse proxy relays to this server, list its"
            " address there, or every client counts as the proxy and one person guessing"
            " links locks every join link out",
        )
    return Finding("ok", subject, "none: each client counts by its own address")


def _check_turn(settings: Settings) -> Finding:
    if settings.turn_url:
        return Finding(
            "ok", "TURN", f"{settings.turn_url} configured (not contacted by this check)"
        )
    return Finding(
        "warning",
        "TURN",
        "none configured (turn_url, turn_secret): patients behind strict NATs or firewalls"
        " that block UDP cannot connect; set up a TURN server (coturn with use-auth-secret)",
    )


async def _check_smtp(settings: Settings) -> Finding:
    if not settings.smtp_configured:
        return Finding(
            "warning",
            "SMTP",
            f"not configured (smtp_host): emails are not sent but saved to"
            f" {settings.undelivered_dir}; set smtp_host and its login to send them",
        )
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    # The options notify/email.py sends with, so that what works here works there.
    server = aiosmtplib.SMTP(**connection_options(settings), timeout=CHECK_TIMEOUT_SECONDS)
    try:
        async with server:  # connects, and upgrades with STARTTLS if so configured
            await server.ehlo()
            if settings.smtp_username:
                await server.login(settings.smtp_username, settings.smtp_password)
    except aiosmtplib.SMTPException as exc:
        reason = str(smtp_failure(exc))
    except OSError as exc:  # a TLS handshake failing during STARTTLS
        reason = f"SMTP server unreachable ({network_reason(exc)})"
    else:
        steps = {"tls": ["TLS"], "starttls": ["STARTTLS"], "none": []}[settings.smtp_security]
        if settings.smtp_username:
            steps.append("login accepted")
        done = f" ({', '.join(steps)})" if steps else ""
        return Finding("ok", "SMTP", f"{where} answered{done}")
    return Finding(
        "problem",
        "SMTP",
        f"{where}: {reason}; emails wait in the outbox and are retried: check the smtp_*"
        " settings and that this machine may reach the server",
    )


def _check_vonage(settings: Settings, reached: Reached | None) -> Finding:
    match reached:
        case Answer(host=host):
            return Finding(
                "ok",
                "Vonage",
                f"{host} answered over HTTPS (the API key is first tried by a real message)",
            )
        case NoAnswer(host=host, reason=reason):
            return Finding(
                "problem",
                "Vonage",
                f"{host} unreachable ({reason}): text messages wait in the outbox and are"
                " retried; check that this machine may make HTTPS connections to it",
            )
    # Not reached: no API key.
    return Finding(
        "warning",
        "Vonage",
        f"not configured (vonage_api_key): text messages are not sent but saved to"
        f" {settings.undelivered_dir}; set vonage_api_key and vonage_api_secret to send them",
    )


def _check_data_dir(settings: Settings) -> Finding:
    for directory in (settings.data_dir, settings.recordings_dir):
        reason = _why_unwritable(directory)
        if reason is not None:
            return Finding(
                "problem",
                "data directory",
                f"{directory} cannot be written ({reason}): the server keeps its database,"
                " recordings and unsent messages there; fix its owner and permissions, or"
                " set data_dir",
            )
    created = "" if settings.recordings_dir.exists() else " (the server creates what is missing)"
    return Finding(
        "ok", "data directory", f"{settings.data_dir} and its recordings/ can be written{created}"
    )


def _check_owner_only(settings: Settings) -> Finding:
    subject = "file permissions"
    exposed = open_to_others(settings.data_dir)
    if exposed:
        return Finding(
            "warning",
            subject,
            f"{len(exposed)} of the files and folders in {settings.data_dir} can be opened by"
            f" other accounts on this machine (e.g. {exposed[0]}): they hold health"
            f" information; make them the server's user's only:"
            f" chmod -R go= {shlex.quote(str(settings.data_dir))}",
        )
    return Finding(
        "ok", subject, f"everything in {settings.data_dir} is its owner's only (or not there yet)"
    )


def _why_unwritable(directory: Path) -> str | None:
    """Why no file can be created in `directory`, or in its nearest existing parent
    when it does not exist yet; None when one can. A real file is created (and
    removed): permission bits do not tell for root or a read-only mount."""
    try:
        with tempfile.TemporaryFile(dir=_nearest_existing(directory)):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def _check_free_space(settings: Settings) -> Finding:
    where = _nearest_existing(settings.recordings_dir)
    free = shutil.disk_usage(where).free
    camera_hour = settings.max_video_bitrate / 8 * 3600
    if free < LOW_FREE_SPACE_BYTES:
        return Finding(
            "warning",
            "free space",
            f"only {_size(free)} free on the disk of {where}: a camera at max_video_bitrate records"
            f" {_size(camera_hour)} an hour, and a full disk stops recordings; free some"
            " space or move data_dir to a larger disk",
        )
    return Finding(
        "ok",
        "free space",
        f"{_size(free)} free on the disk of {where}, about {free / camera_hour:.0f}"
        " camera-hours of recording",
    )


def _check_clock(answers: list[Answer]) -> Finding:
    why = "join links open and close, and TURN credentials expire, by this machine's clock"
    dated = [(a.host, a.clock_ahead) for a in answers if a.clock_ahead is not None]
    if not dated:
        return Finding(
            "warning",
            "clock",
            "could not tell: no HTTPS server answered with its time (this asks Vonage and"
            f" an https:// base URL); make sure time synchronisation (NTP) is on: {why}",
        )
    host, ahead = dated[0]
    seconds = abs(ahead.total_seconds())
    if abs(ahead) > CLOCK_TOLERANCE:
        direction = "ahead of" if ahead > timedelta(0) else "behind"
        return Finding(
            "warning",
            "clock",
            f"this machine's clock is {seconds:.0f} s {direction} {host}'s: {why}; turn on"
            " time synchronisation (NTP, e.g. timedatectl set-ntp true)",
        )
    return Finding("ok", "clock", f"within {seconds:.0f} s of {host}'s")


# --- backup ---------------------------------------------------------------------------


def backup(settings: Settings, target: Path) -> int:
    """Copy the database and the secret key into the new or empty directory
    `target`, with an index of the recordings' files; print what was written."""
    if not settings.database_path.is_file():
        raise NotFound(f"nothing to back up: no {settings.database_path} (is data_dir right?)")
    if not settings.secret_key_path.is_file():
        raise NotFound(
            f"no {settings.secret_key_path}: the server creates it at its first start,"
            " and a database without it is of little use"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} is not an empty directory: give a new or empty one")
    # The database and the key together let anyone use every join link: owner only,
    # also when the directory was there already (nobody else may swap a file in).
    owner_only_directory(target)
    if target.stat().st_uid != os.geteuid():
        raise Conflict(f"{target} belongs to another user: give a directory of your own")
    target.chmod(DIRECTORY_MODE)

    database = target / settings.database_path.name
    _copy_database(settings.database_path, database)
    print(f"database: {database} ({_size(database.stat().st_size)})")

    key = target / settings.secret_key_path.name
    _write_private(key, settings.secret_key_path.read_bytes())
    print(f"secret key: {key}")

    index = target / RECORDINGS_INDEX
    recordings = recordings_index(settings.recordings_dir)
    _write_private(index, (json.dumps(recordings, indent=2) + "\n").encode())
    files = [f for r in recordings["recordings"] for f in r["files"]]
    print(
        f"recordings index: {index} ({_count(len(recordings['recordings']), 'recording')},"
        f" {_count(len(files), 'file')}, {_size(sum(f['size'] for f in files))}; the media"
        " itself is not copied: see docs/operations.md)"
    )

    with closing(sqlite3.connect(database)) as copy:
        verdict = [row[0] for row in copy.execute("PRAGMA integrity_check")]
    if verdict != ["ok"]:
        print("problem: the copied database fails SQLite's integrity check: " + "; ".join(verdict))
        return 1
    print("checked: the copied database passes SQLite's integrity check")
    return 0


def _copy_database(source: Path, copy: Path) -> None:
    """SQLite's online backup, from a read-only connection of its own. In one step:
    under WAL a reader sees one snapshot and holds up no writer, whereas a copy in
    several steps would start over at each write of the server's."""
    _write_private(copy, b"")  # created owner-only; SQLite takes an empty file as a new database
    live = sqlite3.connect(
        source.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
    )
    with closing(live), closing(sqlite3.connect(copy)) as written:
        live.backup(written)


def recordings_index(recordings_dir: Path) -> dict[str, Any]:
    """Each recording directory's files, with their size and SHA-256, by path from
    `recordings_dir` (for `sha256sum --check` run there)."""
    recordings = []
    for directory in _recording_directories(recordings_dir):
        try:
            files = [
                _indexed(path, recordings_dir)
                for path in sorted(directory.rglob("*"))
                if path.is_file()
            ]
        except FileNotFoundError:
            continue  # deleted meanwhile: its directory was moved aside
        recordings.append({"id": int(directory.name), "files": files})
    return {
        "taken_at": to_db_time(utc_now()),
        "recordings_dir": str(recordings_dir.resolve()),
        "recordings": recordings,
    }


def _recording_directories(recordings_dir: Path) -> list[Path]:
    """By id; not those of deleted recordings, moved aside until their files are gone."""
    if not recordings_dir.is_dir():
        return []
    found = [p for p in recordings_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def _indexed(path: Path, root: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256")
        # What was read: a track still being recorded grows meanwhile.
        size = file.tell()
    return {"path": path.relative_to(root).as_posix(), "size": size, "sha256": digest.hexdigest()}


def _write_private(path: Path, data: bytes) -> None:
    """A new file only its owner can read."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as file:
        file.write(data)


def _size(count: float) -> str:
    units = ["bytes", "kB", "MB", "GB", "TB"]
    while count >= 1000 and len(units) > 1:
        count /= 1000
        units.pop(0)
    return f"{count:.0f} bytes" if units[0] == "bytes" else f"{count:.1f} {units[0]}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
