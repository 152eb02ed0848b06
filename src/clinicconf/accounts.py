"""Staff accounts: passwords, browser sessions, API tokens and the first-run setup link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from . import audit
from .db import Database, Row, Transaction, from_db_time, to_db_time, utc_now
from .errors import ValidationError
from .security import hash_password, new_token, token_hash, verify_password

SESSION_LIFETIME: Final = timedelta(hours=12)
# A session's use is written down at most this often, not on every request.
ACTIVITY_RECORDED_EVERY: Final = timedelta(minutes=1)
MIN_PASSWORD_LENGTH: Final = 10


@dataclass(frozen=True)
class StaffUser:
    id: int
    name: str
    email: str
    is_admin: bool

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor("staff", self.id)


def _user(row: Row) -> StaffUser:
    return StaffUser(row["id"], row["name"], row["email"], bool(row["is_admin"]))


async def staff_count(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) AS n FROM staff")
    return int(row["n"]) if row else 0


def check_password_length(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Use at least {MIN_PASSWORD_LENGTH} characters.", "password")


async def staff_id_for_email(db: Database, email: str) -> int | None:
    row = await db.fetchone("SELECT id FROM staff WHERE email = ?", (email.strip(),))
    return None if row is None else int(row["id"])


async def authenticate(db: Database, email: str, password: str) -> StaffUser | None:
    row = await db.fetchone("SELECT * FROM staff WHERE email = ?", (email.strip(),))
    stored = row["password_hash"] if row is not None else None
    if not await verify_password(stored, password) or row is None:
        return None
    return _user(row)


async def set_password(db: Database, staff_id: int, password: str) -> None:
    """A new password; the staff member's open sessions end with the old one."""
    password_hash = await hash_password(password)
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE staff SET password_hash = ? WHERE id = ?", (password_hash, staff_id)
        )
        await tx.execute("DELETE FROM sessions WHERE staff_id = ?", (staff_id,))
        await audit.record(tx, audit.SYSTEM, "password_set", subject=("staff", staff_id))


async def start_session(db: Database, user: StaffUser) -> str:
    """A new session token for the cookie; only its hash is stored."""
    token = new_token()
    now = utc_now()
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM sessions WHERE expires_at <= ?", (to_db_time(now),))
        await tx.execute(
            "INSERT INTO sessions (token_hash, staff_id, created_at, expires_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                token_hash(token),
                user.id,
                to_db_time(now),
                to_db_time(now + SESSION_LIFETIME),
                to_db_time(now),
            ),
        )
        await audit.record(tx, user.actor, "signed_in")
    return token


class SessionIdle(Exception):
    """The session was unused for the idle time, and has now been deleted."""


async def session_user(
    db: Database, token: str, idle_limit: timedelta, *, activity: bool = True
) -> StaffUser | None:
    """The staff member a browser session belongs to, or None. Each use is activity
    that keeps the session open, unless `activity` is false (a page asking by
    itself); raises SessionIdle after `idle_limit` without any."""
    row = await db.fetchone(
        "SELECT staff.*, sessions.id AS session_id, sessions.expires_at, sessions.last_seen_at"
        " FROM sessions JOIN staff ON staff.id = sessions.staff_id"
        " WHERE sessions.token_hash = ?",
        (token_hash(token),),
    )
    now = utc_now()
    if row is None or from_db_time(row["expires_at"]) <= now:
        return None
    user = _user(row)
    unused_for = now - from_db_time(row["last_seen_at"])
    if unused_for >= idle_limit:
        async with db.transaction() as tx:
            # Two requests may find it idle at once: one deletes it and records that.
            if await tx.fetchone(
                "DELETE FROM sessions WHERE id = ? RETURNING id", (row["session_id"],)
            ):
                await audit.record(tx, user.actor, "signed_out", reason="idle")
        raise SessionIdle
    if activity and unused_for >= ACTIVITY_RECORDED_EVERY:
        await db.execute(
            "UPDATE sessions SET last_seen_at = ? WHERE id = ?",
            (to_db_time(now), row["session_id"]),
        )
    return user


async def end_session(db: Database, token: str) -> None:
    """Signing out: the session is deleted, so its cookie opens nothing any more."""
    async with db.transaction() as tx:
        row = await tx.fetchone(
            "DELETE FROM sessions WHERE token_hash = ? RETURNING staff_id", (token_hash(token),)
        )
        if row is not None:
            await audit.record(tx, audit.Actor("staff", row["staff_id"]), "signed_out")


async def create_api_token(db: Database, staff_id: int) -> str:
    """A new API token, returned once; only its hash is stored."""
    token = new_token()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO api_tokens (token_hash, staff_id, created_at) VALUES (?, ?, ?)",
            (token_hash(token), staff_id, to_db_time(utc_now())),
        )
        await audit.record(tx, audit.SYSTEM, "api_token_created", subject=("staff", staff_id))
    return token


async def revoke_api_tokens(db: Database, staff_id: int) -> int:
    """Withdraw every API token of a staff member (a leaked one, or someone leaving);
    returns how many there were."""
    async with db.transaction() as tx:
        rows = await tx.fetchall("SELECT id FROM api_tokens WHERE staff_id = ?", (staff_id,))
        await tx.execute("DELETE FROM api_tokens WHERE staff_id = ?", (staff_id,))
        await audit.record(
            tx, audit.SYSTEM, "api_tokens_revoked", subject=("staff", staff_id), count=len(rows)
        )
    return len(rows)


async def api_token_user(db: Database, token: str) -> StaffUser | None:
    row = await db.fetchone(
        "SELECT staff.*, api_tokens.id AS token_id FROM api_tokens"
        " JOIN staff ON staff.id = api_tokens.staff_id WHERE api_tokens.token_hash = ?",
        (token_hash(token),),
    )
    if row is None:
        return None
    await db.execute(
        "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
        (to_db_time(utc_now()), row["token_id"]),
    )
    return _user(row)


async def create_setup_token(db: Database) -> str | None:
    """A one-time link token for creating the first administrator, or None when
    staff accounts exist already."""
    token = new_token()
    async with db.transaction() as tx:
        row = await tx.fetchone("SELECT count(*) AS n FROM staff")
        if row is not None and row["n"] > 0:
            return None
        # A new start replaces the previous link: only the last one printed works.
        await tx.execute("DELETE FROM setup_tokens")
        await tx.execute(
            "INSERT INTO setup_tokens (token_hash, created_at) VALUES (?, ?)",
            (token_hash(token), to_db_time(utc_now())),
        )
    return token


async def setup_token_valid(db: Database | Transaction, token: str) -> bool:
    row = await db.fetchone(
        "SELECT (SELECT count(*) FROM staff) AS staff,"
        " (SELECT count(*) FROM setup_tokens WHERE token_hash = ?) AS tokens",
        (token_hash(token),),
    )
    return row is not None and row["staff"] == 0 and row["tokens"] == 1
