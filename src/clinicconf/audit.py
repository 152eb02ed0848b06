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
# A Public Conference's anonymous guests' own rows (a link opened, waiting, joined,
# left: each says only "a guest") are written one by one up to this many per event,
# then counted by action in one row of the event's, GUEST_TALLY: a crowd of throwaway
# guests cannot grow the log without end, and every arrival is still in it, counted.
# What a host does about a guest is always written in full.
MAX_GUEST_ROWS_PER_EVENT: Final = 500
GUEST_TALLY: Final = "guest_activity_counted"


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


async def record_guest(tx: Transaction, action: str, *, event_id: int, **detail: Any) -> None:
    """A guest's own doing, as MAX_GUEST_ROWS_PER_EVENT says."""
    written = await tx.fetchone(
        "SELECT count(*) AS rows FROM audit_log WHERE event_id = ? AND actor_kind = 'guest'",
        (event_id,),
    )
    if written is not None and written["rows"] < MAX_GUEST_ROWS_PER_EVENT:
        await record(tx, Actor("guest"), action, event_id=event_id, **detail)
        return
    tally = await tx.fetchone(
        "SELECT id, detail FROM audit_log WHERE event_id = ? AND action = ?",
        (event_id, GUEST_TALLY),
    )
    if tally is None:
        first: dict[str, Any] = {action: 1}
        await record(tx, SYSTEM, GUEST_TALLY, event_id=event_id, **first)
        return
    counts = json.loads(tally["detail"])
    counts[action] = counts.get(action, 0) + 1
    await tx.execute(
        "UPDATE audit_log SET at = ?, detail = ? WHERE id = ?",
        (to_db_time(utc_now()), json.dumps(counts, sort_keys=True), tally["id"]),
    )


async def entries(db: Database, *, event_id: int | None = None) -> list[Row]:
    if event_id is None:
        return await db.fetchall("SELECT * FROM audit_log ORDER BY id")
    return await db.fetchall("SELECT * FROM audit_log WHERE event_id = ? ORDER BY id", (event_id,))


async def write(
    db: Database,
    actor: Actor,
    action: str,
    *,
    event_id: int,
    subject: tuple[str, int] | None = None,
    **detail: Any,
) -> None:
    """One entry about an event, in a transaction of its own; a guest's own doing as
    `record_guest` says (a guest acts on nobody: their entries name no subject)."""
    async with db.transaction() as tx:
        if actor.kind == "guest":
            await record_guest(tx, action, event_id=event_id, **detail)
        else:
            await record(tx, actor, action, event_id=event_id, subject=subject, **detail)
