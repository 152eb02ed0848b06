"""The command line: serve, migrate, create-staff, set-password, create-api-token,
revoke-api-tokens, check, backup."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from . import accounts, keys, ops, owner_only
from .app import create_app
from .config import ConfigError, Settings, load_settings
from .db import Database
from .errors import ClinicConfError, NotFound
from .links import JoinLinks
from .schedule import StaffInput
from .scheduling import Scheduler
from .security import hash_password, load_or_create_secret_key
from .web.logging import RedactingAccessLogger, redact_tokens_in_logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clinicconf", description=__doc__)
    parser.add_argument("--config", type=Path, help="a TOML file of settings")
    settings = parser.add_argument_group(
        "settings", "each overrides the TOML file and the CLINICCONF_* environment variable"
    )
    for field in dataclasses.fields(Settings):
        settings.add_argument("--" + field.name.replace("_", "-"), dest=field.name, metavar="V")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the server")
    commands.add_parser("migrate", help="apply pending database migrations")
    staff = commands.add_parser("create-staff", help="create a staff account")
    staff.add_argument("--name", required=True)
    staff.add_argument("--email", required=True)
    staff.add_argument("--phone")
    staff.add_argument("--admin", action="store_true", help="an administrator")
    staff.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    password = commands.add_parser(
        "set-password", help="set a staff member's password, read from standard input"
    )
    password.add_argument("--email", required=True)
    token = commands.add_parser("create-api-token", help="print a new API token for a staff member")
    token.add_argument("--email", required=True)
    revoke = commands.add_parser("revoke-api-tokens", help="withdraw a staff member's API tokens")
    revoke.add_argument("--email", required=True)
    commands.add_parser(
        "check", help="report configuration problems to fix before going live (exit code 1)"
    )
    backup = commands.add_parser(
        "backup", help="copy the database, the secret key and an index of the recordings"
    )
    backup.add_argument("dir", type=Path, help="a new or empty directory to write them to")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    try:
        settings = load_settings(args.config, os.environ, overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact_tokens_in_logs()  # a request line aiohttp cannot parse is logged as it came
    if args.command == "serve":
        serve(settings)
        return 0
    try:
        return asyncio.run(_COMMANDS[args.command](settings, args))
    except ClinicConfError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def serve(settings: Settings) -> None:
    app = create_app(settings)

    async def announce_setup_link(app: web.Application) -> None:
        token = await accounts.create_setup_token(app[keys.DATABASE])
        if token is not None:
            # Printed to the console once, never logged: it makes an administrator.
            print(
                "\nNo staff account exists yet. Open this link to create the first"
                f" administrator:\n\n    {settings.public_base_url}/setup/{token}\n",
                flush=True,
            )

    app.on_startup.append(announce_setup_link)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=RedactingAccessLogger,
        print=lambda text: print(text, flush=True),
    )


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[tuple[Database, Scheduler]]:
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        secret_key = load_or_create_secret_key(settings.secret_key_path)
        yield (
            db,
            Scheduler(db, JoinLinks(secret_key, settings.public_base_url), settings.phone_region),
        )
    finally:
        await db.close()


def _read_password() -> str:
    """The first line of standard input, so that the password stays out of the
    shell's history and the process list."""
    password = sys.stdin.readline().rstrip("\r\n")
    accounts.check_password_length(password)
    return password


async def _staff_id(db: Database, email: str) -> int:
    staff_id = await accounts.staff_id_for_email(db, email)
    if staff_id is None:
        raise NotFound(f"no staff member with email {email}")
    return staff_id


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    db = await Database.open(settings.database_path)
    try:
        applied = await db.migrate()
    finally:
        await db.close()
    print("applied: " + ", ".join(applied) if applied else "the database is up to date")
    return 0


async def _create_staff(settings: Settings, args: argparse.Namespace) -> int:
    password_hash = await hash_password(_read_password()) if args.password_stdin else None
    async with _services(settings) as (_, scheduler):
        staff = await scheduler.create_staff(
            None, StaffInput(args.name, args.email, args.phone, args.admin), password_hash
        )
    print(f"created staff member {staff.id}: {staff.name} <{staff.email}>")
    return 0


async def _set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password()
    async with _services(settings) as (db, _):
        await accounts.set_password(db, await _staff_id(db, args.email), password)
    print(f"password set for {args.email}")
    return 0


async def _create_api_token(settings: Settings, args: argparse.Namespace) -> int:
    async with _services(settings) as (db, _):
        token = await accounts.create_api_token(db, await _staff_id(db, args.email))
    print(token)
    return 0


async def _revoke_api_tokens(settings: Settings, args: argparse.Namespace) -> int:
    async with _services(settings) as (db, _):
        count = await accounts.revoke_api_tokens(db, await _staff_id(db, args.email))
    print(f"revoked {count} API token{'' if count == 1 else 's'} of {args.email}")
    return 0


async def _check(settings: Settings, args: argparse.Namespace) -> int:
    return await ops.check(settings)


async def _backup(settings: Settings, args: argparse.Namespace) -> int:
    return ops.backup(settings, args.dir)


_COMMANDS = {
    "migrate": _migrate,
    "create-staff": _create_staff,
    "set-password": _set_password,
    "create-api-token": _create_api_token,
    "revoke-api-tokens": _revoke_api_tokens,
    "check": _check,
    "backup": _backup,
}


def run() -> None:
    # The process's own setting: whatever serve or a command creates (the database
    # and its journals, recordings, backups) is its owner's only.
    owner_only.restrict_umask()
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
