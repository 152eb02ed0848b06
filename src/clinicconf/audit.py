"""The audit log: who did what to which event and person, when. Never a token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from .db import Database, Row, Transaction, to_db_time, utc_now

ActorKind = Literal["staff", "patient", "guest", "system"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: int | None = None


SYSTEM: Final = Actor("system")


async def record(
    tx: Transaction,
    actor: Actor,
    action: str,
    *,
    event_id: int | None = None,
    subject: tuple[str, int] | None = None,
    **detail: Any,
) -> None:
    subject_kind, subject_id = subject if subject else (None, None)
    await tx.execute(
        "INSERT INTO audit_log (at, actor_kind, actor_id, action, event_id,"
        " subject_kind, subject_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            to_db_time(utc_now()),
            actor.kind,
            actor.id,
            action,
            event_id,
            subject_kind,
            subject_id,
            json.dumps(detail, sort_keys=True) if detail else None,
        ),
    )


async def entries(db: Database, *, event_id: int | None = None) -> list[Row]:
    if event_id is None:
        return await db.fetchall("SELECT * FROM audit_log ORDER BY id")
    return await db.fetchall("SELECT * FROM audit_log WHERE event_id = ? ORDER BY id", (event_id,))
