"""The outbox's background sender: delivers due messages, retries with backoff,
and picks up where it left off after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from datetime import timedelta
from typing import Final

from ..config import Settings
from ..db import Database, Row, from_db_time, to_db_time, utc_now
from ..links import JoinLinks
from .delivery import DeliveryError, Transports
from .email import SmtpTransport
from .messages import EventReader, compose
from .sms import VonageTransport
from .undelivered import UndeliveredFolder

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 20
# How long the sender sleeps at most when nothing wakes it: retries come due on their own.
IDLE_POLL_SECONDS: Final = 5.0
FIRST_RETRY: Final = timedelta(seconds=5)
MAX_RETRY: Final = timedelta(minutes=15)
# Temporary failures are retried for this long after the message was queued, so that a
# night's outage loses nothing; then it is marked failed, for staff to see and resend.
GIVE_UP_AFTER: Final = timedelta(days=1)
# On shutdown the message being sent may finish, so that it is not sent again after
# the restart; a transport stuck longer than this is cancelled.
CLOSE_GRACE_SECONDS: Final = 10.0


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... doubling up to 15 minutes."""
    return min(FIRST_RETRY * (1 << min(attempts - 1, 10)), MAX_RETRY)


def make_transports(settings: Settings) -> Transports:
    """SMTP and Vonage where configured; otherwise messages are saved to files."""
    folder = UndeliveredFolder(settings.undelivered_dir)
    return Transports(
        email=SmtpTransport(settings) if settings.smtp_configured else folder,
        sms=VonageTransport(settings) if settings.vonage_configured else folder,
    )


class OutboxSender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        links: JoinLinks,
        events: EventReader,
    ) -> None:
        self._db = db
        self._settings = settings
        self._links = links
        self._events = events
        self._transports = make_transports(settings)
        self._wakeup = asyncio.Event()
        # One round at a time, whoever starts it: a message is never being sent twice.
        self._round = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="outbox-sender")

    def wake(self) -> None:
        """New messages were committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def close(self) -> None:
        """Stop after the message being sent; idempotent."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._closing = True
        self._wakeup.set()
        # On timeout wait_for cancels the task and waits for it to end.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, CLOSE_GRACE_SECONDS)

    async def _run(self) -> None:
        while not self._closing:
            # Cleared before looking, so that a wake-up during the round is not lost.
            self._wakeup.clear()
            try:
                tried = await self.deliver_due()
            except Exception:
                log.exception("outbox: delivery round failed; retrying shortly")
                tried = 0
            if tried:
                continue  # there may be more due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_SECONDS)

    async def deliver_due(self) -> int:
        """Try every message that is due now; returns how many were tried."""
        async with self._round:
            rows = await self._db.fetchall(
                "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY id LIMIT ?",
                (to_db_time(utc_now()), BATCH_SIZE),
            )
            tried = 0
            for listed in rows:
                if self._closing:
                    break
                # Read again: a later change to the event may have replaced the message
                # since the batch was listed.
                row = await self._db.fetchone(
                    "SELECT * FROM outbox WHERE id = ? AND status = 'pending'", (listed["id"],)
                )
                if row is not None:
                    await self._deliver(row)
                tried += 1
            return tried

    async def _deliver(self, row: Row) -> None:
        try:
            message = await compose(self._db, self._settings, self._links, self._events, row)
            outcome = await self._transports.send(message)
        except DeliveryError as exc:
            await self._record_failure(row, exc)
            return
        except Exception as exc:
            # A case nobody foresaw must not hold up the messages queued behind this one.
            # Its text may quote an address or a link: only where it happened is logged.
            log.error(
                "outbox: message %d: unexpected %s\n%s",
                row["id"],
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            await self._record_failure(
                row, DeliveryError(f"unexpected error ({type(exc).__name__})", permanent=False)
            )
            return
        # Whatever happened to the row meanwhile (superseded), it went out: say so.
        await self._db.execute(
            "UPDATE outbox SET status = ?, attempts = attempts + 1, sent_at = ?,"
            " last_error = NULL WHERE id = ?",
            (outcome, to_db_time(utc_now()), row["id"]),
        )
        log.info(
            "outbox: message %d (%s by %s) %s", row["id"], row["kind"], row["channel"], outcome
        )

    async def _record_failure(self, row: Row, exc: DeliveryError) -> None:
        attempts = row["attempts"] + 1
        now = utc_now()
        give_up = exc.permanent or now - from_db_time(row["created_at"]) >= GIVE_UP_AFTER
        # Only while pending: a message superseded during this attempt stays superseded.
        await self._db.execute(
            "UPDATE outbox SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (
                "failed" if give_up else "pending",
                attempts,
                str(exc),
                to_db_time(now + retry_delay(attempts)),
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
