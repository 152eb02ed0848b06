"""The command line, run as a clinic's administrator would run it."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from clinicconf import accounts
from clinicconf.db import Database


def clinicconf(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinicconf", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_create_staff_then_an_api_token_that_works(tmp_path: Path) -> None:
    made = clinicconf(
        tmp_path,
        "create-staff",
        "--name", "Dr Ada Lovelace",
        "--email", "ada@clinic.test",
        "--phone", "(202) 555-0123",
        "--admin",
        "--password-stdin",
        stdin="a long enough password\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "Dr Ada Lovelace" in made.stdout

    issued = clinicconf(tmp_path, "create-api-token", "--email", "ada@clinic.test")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()

    db = await Database.open(tmp_path / "clinicconf.sqlite3")
    try:
        user = await accounts.api_token_user(db, token)
        signed_in = await accounts.authenticate(db, "ada@clinic.test", "a long enough password")
        stored = await db.fetchone("SELECT phone FROM staff WHERE email = 'ada@clinic.test'")
        raw = (tmp_path / "clinicconf.sqlite3").read_bytes()
    finally:
        await db.close()
    assert user is not None and user.is_admin
    assert signed_in is not None

    revoked = clinicconf(tmp_path, "revoke-api-tokens", "--email", "ada@clinic.test")
    assert revoked.stdout.strip() == "revoked 1 API token of ada@clinic.test"
    db = await Database.open(tmp_path / "clinicconf.sqlite3")
    try:
        assert await accounts.api_token_user(db, token) is None
    finally:
        await db.close()
    assert stored is not None and stored["phone"] == "+12025550123"
    assert token.encode() not in raw


async def test_an_account_made_without_a_password_gets_one(tmp_path: Path) -> None:
    made = clinicconf(tmp_path, "create-staff", "--name", "Sam", "--email", "sam@clinic.test")
    assert made.returncode == 0, made.stderr
    changed = clinicconf(
        tmp_path, "set-password", "--email", "sam@clinic.test", stdin="sam's new password\n"
    )
    assert changed.returncode == 0, changed.stderr

    db = await Database.open(tmp_path / "clinicconf.sqlite3")
    try:
        assert await accounts.authenticate(db, "sam@clinic.test", "sam's new password")
    finally:
        await db.close()


def test_cli_errors_are_plain_sentences(tmp_path: Path) -> None:
    short = clinicconf(
        tmp_path, "create-staff", "--name", "A", "--email", "a@clinic.test", "--password-stdin",
        stdin="short\n",
    )  # fmt: skip
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    for command in ("create-api-token", "set-password"):
        unknown = clinicconf(tmp_path, command, "--email", "nobody@clinic.test", stdin="x" * 12)
        assert unknown.returncode == 1 and "no staff member" in unknown.stderr
    bad_email = clinicconf(tmp_path, "create-staff", "--name", "A", "--email", "not-an-email")
    assert bad_email.returncode == 1 and "not a valid email" in bad_email.stderr
    assert clinicconf(tmp_path, "migrate").stdout.strip() == "the database is up to date"


async def test_serve_prints_a_setup_link_and_never_logs_it(tmp_path: Path) -> None:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clinicconf", "--data-dir", str(tmp_path), "--port", str(port),
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert server.stdout is not None
    try:
        setup_url = ""
        async with asyncio.timeout(30):
            while not (line := (await server.stdout.readline()).decode()).startswith("=="):
                if match := re.search(r"(http://\S+/setup/\S+)", line):
                    setup_url = match.group(1)
        assert setup_url.startswith(f"http://127.0.0.1:{port}/setup/")
        async with aiohttp.ClientSession() as session, session.get(setup_url) as page:
            assert page.status == 200
            assert "administrator" in (await page.text()).lower()
    finally:
        server.terminate()
        _, log_bytes = await asyncio.wait_for(server.communicate(), 30)
    log = log_bytes.decode()
    token = setup_url.rsplit("/", 1)[1]
    assert "GET /setup/[token] 200" in log
    assert token not in log
