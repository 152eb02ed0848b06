"""Join links: one per linked person and event (`/j/<token>`), one shared public
link per Public Conference (`/p/<token>`).

The database never holds a usable token. It stores the token's SHA-256, to find
the link when someone opens it, and a random salt; the token itself is
HMAC(server key, salt), so staff can copy a link again later and a stolen copy of
the database alone lets nobody in.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from .db import Database, Transaction, to_db_time, utc_now
from .security import keyed_digest, token_hash

LinkKind = Literal["staff", "patient", "public"]
# Whether a link of an event can be used now.
JoinState = Literal["cancelled", "early", "open", "ended"]
SALT_BYTES: Final = 16
# A token is 43 URL-safe characters; anything else is not worth a database look-up.
TOKEN_LENGTH: Final = 43


@dataclass(frozen=True)
class JoinLink:
    id: int
    event_id: int
    kind: LinkKind
    person_id: int | None


@dataclass(frozen=True)
class LinkWindow:
    """When a link may be used: from `opens_at` until the event's end."""

    opens_at: datetime
    closes_at: datetime

    def state(self, now: datetime) -> Literal["early", "open", "ended"]:
        if now < self.opens_at:
            return "early"
        if now >= self.closes_at:
            return "ended"
        return "open"

    def state_now(self) -> Literal["early", "open", "ended"]:
        return self.state(utc_now())


def link_window(start: datetime, end: datetime, window_minutes: int) -> LinkWindow:
    return LinkWindow(start - timedelta(minutes=window_minutes), end)


class JoinLinks:
    def __init__(self, secret_key: bytes, base_url: str) -> None:
        self._key = secret_key
        self._base_url = base_url

    def _token(self, salt: bytes) -> str:
        digest = keyed_digest(self._key, "join-link", salt)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def ensure(
        self,
        tx: Transaction,
        event_id: int,
        kind: LinkKind,
        person_id: int | None,
        *,
        self_issued: bool = False,
    ) -> int:
        """The link's id, creating the link if this person has none for the event."""
        link_id = await self._link_id(tx, event_id, kind, person_id)
        if link_id is not None:
            return link_id
        salt = secrets.token_bytes(SALT_BYTES)
        return await tx.execute(
            "INSERT INTO join_links (event_id, kind, person_id, salt, token_hash, self_issued,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                kind,
                person_id,
                salt,
                token_hash(self._token(salt)),
                int(self_issued),
                to_db_time(utc_now()),
            ),
        )

    async def url(self, db: Database | Transaction, link_id: int) -> str:
        row = await db.fetchone("SELECT kind, salt FROM join_links WHERE id = ?", (link_id,))
        if row is None:
            raise LookupError(f"join link {link_id} does not exist")
        prefix = "p" if row["kind"] == "public" else "j"
        return f"{self._base_url}/{prefix}/{self._token(bytes(row['salt']))}"

    async def url_for(
        self, db: Database | Transaction, event_id: int, kind: LinkKind, person_id: int | None
    ) -> str | None:
        link_id = await self._link_id(db, event_id, kind, person_id)
        return None if link_id is None else await self.url(db, link_id)

    @staticmethod
    async def _link_id(
        db: Database | Transaction, event_id: int, kind: LinkKind, person_id: int | None
    ) -> int | None:
        row = await db.fetchone(
            "SELECT id FROM join_links WHERE event_id = ? AND kind = ? AND person_id IS ?",
            (event_id, kind, person_id),
        )
        return None if row is None else int(row["id"])

    async def resolve(
        self, db: Database, token: str, kind: Literal["personal", "public"]
    ) -> JoinLink | None:
        """The link a token opens, or None. A personal token never opens a public
        link's page and the other way round."""
        if len(token) != TOKEN_LENGTH:
            return None
        row = await db.fetchone(
            "SELECT id, event_id, kind, person_id FROM join_links WHERE token_hash = ?",
            (token_hash(token),),
        )
        if row is None or (row["kind"] == "public") != (kind == "public"):
            return None
        return JoinLink(row["id"], row["event_id"], row["kind"], row["person_id"])
