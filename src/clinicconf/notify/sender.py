"""The outbox's background sender: delivers due messages, retries with backoff,
and picks up where it left off after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Final

from ..config import Settings
from ..db import Database, Row, to_db_time, utc_now
from ..links import JoinLinks
from .delivery import DeliveryError, Transports, make_transports
from .messages import compose

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 20
# How long the sender sleeps at most when nothing wakes it: retries come due on their own.
IDLE_POLL_SECONDS: Final = 5.0
FIRST_RETRY: Final = timedelta(seconds=5)
MAX_RETRY: Final = timedelta(minutes=15)
# After this many temporary failures a message is marked failed, for staff to see and resend.
MAX_ATTEMPTS: Final = 12


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... doubling up to 15 minutes."""
    return min(FIRST_RETRY * (1 << min(attempts - 1, 10)), MAX_RETRY)


class OutboxSender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        links: JoinLinks,
        transports: Transports | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._links = links
        self._transports = transports or make_transports(settings)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-sender")

    def wake(self) -> None:
        """New messages were committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
            except Exception:
                log.exception("outbox: delivery round failed; retrying shortly")
                delivered = 0
            if delivered:
                continue  # there may be more due
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_SECONDS)

    async def deliver_due(self) -> int:
        """Try every message that is due now; returns how many were tried."""
        rows = await self._db.fetchall(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY id LIMIT ?",
            (to_db_time(utc_now()), BATCH_SIZE),
        )
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: Row) -> None:
        try:
            message = await compose(self._db, self._settings, self._links, row)
            await self._transports.send(message)
        except DeliveryError as exc:
            await self._record_failure(row, exc)
            return
        await self._db.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?,"
            " last_error = NULL WHERE id = ?",
            (to_db_time(utc_now()), row["id"]),
        )
        log.info("outbox: message %d (%s by %s) delivered", row["id"], row["kind"], row["channel"])

    async def _record_failure(self, row: Row, exc: DeliveryError) -> None:
        attempts = row["attempts"] + 1
        give_up = exc.permanent or attempts >= MAX_ATTEMPTS
        await self._db.execute(
            "UPDATE outbox SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (
                "failed" if give_up else "pending",
                attempts,
                str(exc),
                to_db_time(utc_now() + retry_delay(attempts)),
                row["id"],
            ),
        )
        log.warning(
            "outbox: message %d (%s by %s) failed, attempt %d%s: %s",
            row["id"],
            row["kind"],
            row["channel"],
            attempts,
            "; giving up" if give_up else "",
            exc,
        )
