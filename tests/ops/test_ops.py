"""The operator's commands: `check` against real servers on 127.0.0.1 (an SMTP
server, the HTTPS stand-in for Vonage), and `backup` of a database being written to."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from clinicconf import ops
from clinicconf.config import Settings
from clinicconf.db import Database
from clinicconf.errors import Conflict
from clinicconf.links import JoinLinks
from clinicconf.schedule import StaffInput
from clinicconf.scheduling import Scheduler
from clinicconf.security import load_or_create_secret_key

from ..support.commands import clinicconf, findings
from ..support.servers import HOST, SmtpServer, TlsSmtp, VonageStandIn, free_port, wait_until

TURN_SECRET = "turn-shared-secret"
SHA256SUM = shutil.which("sha256sum") or "sha256sum"  # GNU coreutils


# --- check ----------------------------------------------------------------------------


def ready_to_go_live(settings: Settings, smtp: TlsSmtp, vonage: VonageStandIn) -> Settings:
    """TLS on the public address (the stand-in plays the clinic's reverse proxy), TURN,
    an SMTP server that wants a login, and Vonage."""
    return replace(
        settings,
        base_url=f"https://{vonage.rest_host}",
        turn_url=f"turn:{HOST}:3478",
        turn_secret=TURN_SECRET,
        smtp_host=HOST,
        smtp_port=smtp.server.port,
        smtp_security=smtp.security,
        smtp_username=SmtpServer.USERNAME,
        smtp_password=SmtpServer.PASSWORD,
        smtp_ca_file=str(smtp.ca_file),
        vonage_api_key=vonage.api_key,
        vonage_api_secret=vonage.api_secret,
        vonage_rest_host=vonage.rest_host,
        trusted_proxies=HOST,
    )


async def test_check_passes_a_clinic_ready_to_go_live_then_finds_smtp_down(
    settings: Settings,
    tls_smtp_server: TlsSmtp,
    vonage: VonageStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clinic = ready_to_go_live(settings, tls_smtp_server, vonage)

    assert await ops.check(clinic) == 0
    output = capsys.readouterr().out
    found = findings(output)
    assert found["public base URL"] == ("ok", f"https://{vonage.rest_host} answered over HTTPS")
    assert found["reverse proxy"] == ("ok", f"the client addresses forwarded by {HOST} count")
    assert found["TURN"][0] == "ok"
    security = {"starttls": "STARTTLS", "tls": "TLS"}[tls_smtp_server.security]
    assert found["SMTP"] == (
        "ok",
        f"{HOST}:{tls_smtp_server.server.port} answered ({security}, login accepted)",
    )
    assert tls_smtp_server.server.logins == [(SmtpServer.USERNAME, SmtpServer.PASSWORD)]
    assert found["Vonage"][0] == "ok"
    assert found["data directory"][0] == "ok"
    # The stand-in runs on this machine: its Date comes from the same clock.
    assert found["clock"][0] == "ok" and f"of {vonage.rest_host}'s" in found["clock"][1]
    assert output.splitlines()[-1].startswith("no problems")
    for secret in (SmtpServer.PASSWORD, vonage.api_secret, TURN_SECRET):
        assert secret not in output

    tls_smtp_server.server.stop()
    assert await ops.check(clinic) == 1
    output = capsys.readouterr().out
    verdict, text = findings(output)["SMTP"]
    assert verdict == "problem" and "unreachable (connection refused)" in text
    assert output.splitlines()[-1].startswith("1 problem,")


async def test_check_asks_for_the_reverse_proxy_in_front_of_https(
    settings: Settings, tls_smtp_server: TlsSmtp, vonage: VonageStandIn
) -> None:
    clinic = replace(ready_to_go_live(settings, tls_smtp_server, vonage), trusted_proxies="")
    [proxy] = [f for f in await ops.run_checks(clinic) if f.subject == "reverse proxy"]
    assert proxy.verdict == "warning" and "list its address there" in proxy.text


async def test_check_names_a_vonage_certificate_it_does_not_trust(
    settings: Settings,
    vonage: VonageStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The stand-in's CA, which the vonage fixture made trusted, no longer is.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    clinic = replace(
        settings,
        vonage_api_key=vonage.api_key,
        vonage_api_secret=vonage.api_secret,
        vonage_rest_host=vonage.rest_host,
    )

    assert await ops.check(clinic) == 1

    verdict, text = findings(capsys.readouterr().out)["Vonage"]
    assert verdict == "problem"
    assert text.startswith(f"{vonage.rest_host} unreachable (certificate not trusted")


async def test_check_from_the_command_line_fails_plain_http_and_servers_not_listening(
    tmp_path: Path,
) -> None:
    closed_smtp, closed_vonage = free_port(), free_port()
    secrets = {
        "CLINICCONF_SMTP_PASSWORD": "smtp-password-1",
        "CLINICCONF_VONAGE_API_KEY": "vonage-key-1",
        "CLINICCONF_VONAGE_API_SECRET": "vonage-secret-1",
        "CLINICCONF_TURN_SECRET": TURN_SECRET,
    }

    code, out, err = await clinicconf(
        "--data-dir", str(tmp_path / "data"),
        "--base-url", "http://telehealth.clinic.example",
        "--smtp-host", HOST, "--smtp-port", str(closed_smtp), "--smtp-username", "clinic",
        "--vonage-rest-host", f"{HOST}:{closed_vonage}",
        "--turn-url", f"turn:{HOST}:3478",
        "check",
        env=secrets,
    )  # fmt: skip

    assert code == 1, err
    found = findings(out)
    verdict, text = found["public base URL"]
    assert verdict == "problem" and text.startswith("http://telehealth.clinic.example has no TLS")
    assert found["SMTP"][0] == "problem"
    assert f"{HOST}:{closed_smtp}: SMTP server unreachable (connection refused)" in found["SMTP"][1]
    assert found["Vonage"] == (
        "problem",
        f"{HOST}:{closed_vonage} unreachable (connection refused): text messages wait in the"
        " outbox and are retried; check that this machine may make HTTPS connections to it",
    )
    assert found["TURN"][0] == "ok"
    assert found["clock"][0] == "warning" and found["clock"][1].startswith("could not tell")
    assert out.splitlines()[-1].startswith("3 problems,")
    for secret in secrets.values():
        assert secret not in out + err


async def test_check_on_this_machine_is_fine_for_trying_it_out(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await ops.check(settings) == 0

    output = capsys.readouterr().out
    found = findings(output)
    verdict, text = found["public base URL"]
    assert verdict == "warning" and "works on this machine only" in text
    assert found["TURN"][0] == "warning" and "strict NATs" in found["TURN"][1]
    for channel in ("SMTP", "Vonage"):
        verdict, text = found[channel]
        assert verdict == "warning" and f"saved to {settings.undelivered_dir}" in text
    assert found["clock"][0] == "warning" and found["clock"][1].startswith("could not tell")
    assert found["data directory"][0] == "ok"
    assert output.splitlines()[-1].startswith("no problems")


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory nobody can create a file in. Permission bits do not stop
    root: as root, a path under a regular file instead."""
    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        yield blocker / "data"
        return
    directory = tmp_path / "data"
    directory.mkdir()
    directory.chmod(0o500)
    yield directory
    directory.chmod(0o700)


async def test_check_finds_a_data_directory_it_cannot_write(
    settings: Settings, unwritable_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await ops.check(replace(settings, data_dir=unwritable_dir)) == 1

    verdict, text = findings(capsys.readouterr().out)["data directory"]
    assert verdict == "problem" and text.startswith(f"{unwritable_dir} cannot be written (")


# --- backup ---------------------------------------------------------------------------


@pytest.fixture
async def clinic(settings: Settings) -> Settings:
    """Settings whose data directory has a database and a secret key, as the server
    leaves them."""
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
    finally:
        await db.close()
    load_or_create_secret_key(settings.secret_key_path)
    return settings


async def test_backup_while_the_clinic_writes(clinic: Settings, tmp_path: Path) -> None:
    key = clinic.secret_key_path.read_bytes()
    database = await Database.open(clinic.database_path)
    scheduler = Scheduler(database, JoinLinks(key, clinic.public_base_url), clinic.phone_region)
    committed = 0

    async def keep_adding_staff() -> None:
        nonlocal committed
        while True:
            await scheduler.create_staff(
                None, StaffInput(f"Staff {committed}", f"staff{committed}@clinic.test")
            )
            committed += 1
            # A busy clinic, not a benchmark: the backup's process gets a CPU too.
            await asyncio.sleep(0.005)

    async def some_written() -> bool:
        return committed >= 20

    target = tmp_path / "backup"
    writer = asyncio.create_task(keep_adding_staff())
    try:
        await wait_until(some_written)
        before = committed
        code, out, err = await clinicconf("--data-dir", str(clinic.data_dir), "backup", str(target))
        after = committed
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await database.close()

    assert code == 0, err
    database_line, *lines = out.splitlines()
    assert re.fullmatch(
        rf"database: {re.escape(str(target / 'clinicconf.sqlite3'))} \([0-9.]+ kB\)",
        database_line,
    )
    assert lines == [
        f"secret key: {target / 'secret.key'}",
        f"recordings index: {target / 'recordings-index.json'} (0 recordings, 0 files,"
        " 0 bytes; the media itself is not copied: see docs/operations.md)",
        "checked: the copied database passes SQLite's integrity check",
    ]
    assert after > before  # the clinic went on writing during the backup
    with closing(sqlite3.connect(target / "clinicconf.sqlite3")) as copy:
        [integrity] = copy.execute("PRAGMA integrity_check").fetchone()
        [staff] = copy.execute("SELECT count(*) FROM staff").fetchone()
        [audited] = copy.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'staff_created'"
        ).fetchone()
    assert integrity == "ok"
    assert before <= staff <= after
    # Each staff member and their audit entry were one transaction: none is cut in two.
    assert audited == staff
    assert (target / "secret.key").read_bytes() == key
    for written in target.iterdir():
        assert written.stat().st_mode & 0o077 == 0, written  # the owner's only
    restored = await Database.open(target / "clinicconf.sqlite3")
    try:
        assert await restored.migrate() == []  # the server would take it as it is
    finally:
        await restored.close()


def test_backup_refuses_a_directory_that_is_not_empty(clinic: Settings, tmp_path: Path) -> None:
    target = tmp_path / "last-week"
    target.mkdir()
    (target / "clinicconf.sqlite3").write_bytes(b"last week's copy")

    with pytest.raises(Conflict, match="is not an empty directory"):
        ops.backup(clinic, target)

    assert [p.name for p in target.iterdir()] == ["clinicconf.sqlite3"]
    assert (target / "clinicconf.sqlite3").read_bytes() == b"last week's copy"


def test_backup_into_an_empty_directory_makes_it_its_owners_only(
    clinic: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "backups"
    target.mkdir(mode=0o755)
    assert ops.backup(clinic, target) == 0
    assert target.stat().st_mode & 0o777 == 0o700


def test_backup_indexes_the_recordings_for_a_restore_to_check(
    clinic: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recordings_dir = clinic.recordings_dir
    media = {
        "7/tracks/p1-video.webm": os.urandom(300_000),
        "7/tracks/p1-audio.webm": os.urandom(40_000),
        "7/timeline.jsonl": b'{"t":0,"recording":true,"video":["p1"],"audio":["p1"]}\n',
        "12/conference.webm": os.urandom(120_000),
        # A deleted recording's files, moved aside until they are removed.
        "deleted-3/conference.webm": os.urandom(1_000),
    }
    for name, data in media.items():
        path = recordings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    target = tmp_path / "backup"

    assert ops.backup(clinic, target) == 0

    assert (
        "(2 recordings, 4 files, 460.1 kB; the media itself is not copied"
        in capsys.readouterr().out
    )
    index = json.loads((target / "recordings-index.json").read_text())
    assert [r["id"] for r in index["recordings"]] == [7, 12]
    listed = {f["path"]: (f["size"], f["sha256"]) for r in index["recordings"] for f in r["files"]}
    assert listed == {
        name: (len(data), hashlib.sha256(data).hexdigest())
        for name, data in media.items()
        if not name.startswith("deleted-")
    }

    # A restore checks the media it copied back, as docs/operations.md shows.
    sums = "".join(f"{digest}  {path}\n" for path, (_, digest) in listed.items())
    (recordings_dir / "12/conference.webm").write_bytes(b"damaged")
    checked = subprocess.run(
        [SHA256SUM, "--check", "--quiet"],
        cwd=recordings_dir, input=sums, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 1
    assert checked.stdout.strip() == "12/conference.webm: FAILED"
