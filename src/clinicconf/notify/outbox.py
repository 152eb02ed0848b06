"""The durable outbox: messages are written in the same transaction as the change
that causes them, and a background sender delivers them with retry and backoff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..db import Database, Transaction, to_db_time, utc_now

MessageKind = Literal["invitation", "join_link", "cancellation"]
Channel = Literal["email", "sms"]
RecipientKind = Literal["staff", "patient"]
# superseded: replaced, before it was sent, by a newer message of the same kind;
# saved: kept on the server, as nothing is configured to send it (notify/undelivered.py).
Status = Literal["pending", "sent", "saved", "failed", "superseded"]


async def enqueue(
    tx: Transaction,
    kind: MessageKind,
    channel: Channel,
    event_id: int,
    recipient_kind: RecipientKind,
    recipient_id: int,
) -> int:
    if kind != "join_link":
        # An invitation or a cancellation describes the event as it is now: one not yet
        # sent to this person is out of date, and they should get only the newest.
        await tx.execute(
            "UPDATE outbox SET status = 'superseded' WHERE status = 'pending'"
            " AND kind != 'join_link' AND event_id = ? AND channel = ?"
            " AND recipient_kind = ? AND recipient_id = ?",
            (event_id, channel, recipient_kind, recipient_id),
        )
    now = to_db_time(utc_now())
    return await tx.execute(
        "INSERT INTO outbox (kind, channel, event_id, recipient_kind, recipient_id,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (kind, channel, event_id, recipient_kind, recipient_id, now, now),
    )


@dataclass(frozen=True)
class OutboxEntry:
    """One message of an event as it stands, for staff to see."""

    kind: MessageKind
    channel: Channel
    # None once the recipient is no longer on file.
    recipient_name: str | None
    status: Status
    attempts: int
    # Why the last attempt failed, in words fit for staff (DeliveryError's text).
    last_error: str | None


async def entries_for_event(db: Database, event_id: int) -> list[OutboxEntry]:
    """Every message of an event with its state, newest first."""
    rows = await db.fetchall(
        "SELECT outbox.*, coalesce(staff.name, patients.name) AS recipient_name FROM outbox"
        " LEFT JOIN staff ON outbox.recipient_kind = 'staff' AND staff.id = outbox.recipient_id"
        " LEFT JOIN patients ON outbox.recipient_kind = 'patient'"
        "  AND patients.id = outbox.recipient_id"
        " WHERE outbox.event_id = ? ORDER BY outbox.id DESC",
        (event_id,),
    )
    return [
        OutboxEntry(
            kind=row["kind"],
            channel=row["channel"],
            recipient_name=row["recipient_name"],
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
        )
        for row in rows
    ]
