"""Creating, changing and cancelling events: each change checked against what is
stored, its join links kept to exactly the people it links, and its invitations or
cancellations queued in the outbox in the same transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .. import audit
from ..accounts import StaffUser
from ..db import Database, Transaction, to_db_time, utc_now
from ..errors import Conflict, ValidationError
from ..links import JoinLinks, LinkKind
from ..notify import outbox
from ..notify.outbox import Channel, MessageKind
from ..schedule import (
    Event,
    EventInput,
    Patient,
    PersonKind,
    SavedEvent,
    Staff,
    check_links_kept,
    check_times_and_people,
    clean_name,
    require_may_change,
)
from .records import load_event


class EventRules:
    def __init__(
        self,
        db: Database,
        links: JoinLinks,
        messages_queued: Callable[[], None],
        event_changed: Callable[[Event], Awaitable[None]] | None,
    ) -> None:
        self._db = db
        self._links = links
        # Wakes the outbox sender once a transaction that queued messages has committed.
        self._messages_queued = messages_queued
        # Tells the live conference pages about a committed change or cancellation.
        self._event_changed = event_changed

    async def create_event(self, user: StaffUser, data: EventInput) -> SavedEvent:
        async with self._db.transaction() as tx:
            await self._check_event(tx, data)
            now = to_db_time(utc_now())
            event_id = await tx.execute(
                "INSERT INTO events (title, event_type_id, start_at, end_at, record_patient_id,"
                " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    clean_name(data.title, "title"),
                    data.event_type_id,
                    to_db_time(data.start),
                    to_db_time(data.end),
                    data.record_patient_id,
                    user.id,
                    now,
                    now,
                ),
            )
            await self._link_people(tx, event_id, data)
            event = await load_event(tx, event_id)
            await self._sync_join_links(tx, event)
            saved = await self._queue_for_everyone(tx, event, "invitation")
            await audit.record(tx, user.actor, "event_created", event_id=event_id)
        self._messages_queued()
        return saved

    async def update_event(self, user: StaffUser, event_id: int, data: EventInput) -> SavedEvent:
        async with self._db.transaction() as tx:
            before = await load_event(tx, event_id)
            require_may_change(user, before)
            if before.cancelled:
                raise Conflict("A cancelled event cannot be changed.")
            await self._check_event(tx, data)
            check_links_kept(before, data)
            await tx.execute(
                "UPDATE events SET title = ?, event_type_id = ?, start_at = ?, end_at = ?,"
                " record_patient_id = ?, sequence = sequence + 1, updated_at = ? WHERE id = ?",
                (
                    clean_name(data.title, "title"),
                    data.event_type_id,
                    to_db_time(data.start),
                    to_db_time(data.end),
                    data.record_patient_id,
                    to_db_time(utc_now()),
                    event_id,
                ),
            )
            await tx.execute("DELETE FROM event_staff WHERE event_id = ?", (event_id,))
            await tx.execute("DELETE FROM event_patients WHERE event_id = ?", (event_id,))
            await self._link_people(tx, event_id, data)
            event = await load_event(tx, event_id)
            await self._sync_join_links(tx, event)
            # People taken off the event learn that it no longer concerns them.
            for person in before.staff:
                if event.person("staff", person.id) is None:
                    await self._queue(tx, event, "cancellation", "email", "staff", person)
            for patient in before.patients:
                if event.person("patient", patient.id) is None:
                    await self._queue(tx, event, "cancellation", "email", "patient", patient)
            saved = await self._queue_for_everyone(tx, event, "invitation")
            await audit.record(tx, user.actor, "event_changed", event_id=event_id)
        self._messages_queued()
        if self._event_changed is not None:
            await self._event_changed(saved.event)
        return saved

    async def cancel_event(self, user: StaffUser, event_id: int) -> Event:
        async with self._db.transaction() as tx:
            event = await load_event(tx, event_id)
            require_may_change(user, event)
            if event.cancelled:
                raise Conflict("This event is cancelled already.")
            await tx.execute(
                "UPDATE events SET status = 'cancelled', sequence = sequence + 1, updated_at = ?"
                " WHERE id = ?",
                (to_db_time(utc_now()), event_id),
            )
            event = await load_event(tx, event_id)
            await self._queue_for_everyone(tx, event, "cancellation")
            await audit.record(tx, user.actor, "event_cancelled", event_id=event_id)
        self._messages_queued()
        if self._event_changed is not None:
            await self._event_changed(event)
        return event

    async def _check_event(self, tx: Transaction, data: EventInput) -> None:
        clean_name(data.title, "title")
        type_row = await tx.fetchone(
            "SELECT * FROM event_types WHERE id = ?", (data.event_type_id,)
        )
        if type_row is None:
            raise ValidationError("No such event type.", "event_type_id")
        check_times_and_people(data)
        for table, ids, field_name in (
            ("staff", data.staff_ids, "staff_ids"),
            ("patients", data.patient_ids, "patient_ids"),
        ):
            for person_id in ids:
                if not await tx.fetchone(f"SELECT 1 FROM {table} WHERE id = ?", (person_id,)):  # noqa: S608
                    raise ValidationError(f"Unknown id {person_id}.", field_name)
        if data.record_patient_id is not None:
            if not type_row["public_conference"]:
                raise ValidationError(
                    "Only a Public Conference names a patient record; a telehealth session"
                    " belongs to its patients' records.",
                    "record_patient_id",
                )
            if not await tx.fetchone(
                "SELECT 1 FROM patients WHERE id = ?", (data.record_patient_id,)
            ):
                raise ValidationError("No such patient.", "record_patient_id")

    async def _link_people(self, tx: Transaction, event_id: int, data: EventInput) -> None:
        await tx.executemany(
            "INSERT INTO event_staff (event_id, staff_id) VALUES (?, ?)",
            [(event_id, s) for s in data.staff_ids],
        )
        await tx.executemany(
            "INSERT INTO event_patients (event_id, patient_id) VALUES (?, ?)",
            [(event_id, p) for p in data.patient_ids],
        )

    async def _sync_join_links(self, tx: Transaction, event: Event) -> None:
        """Exactly the links the event needs: one per linked person and a public one
        for a Public Conference. A removed person's link stops working; an
        administrator's own link from "Get My Conference Link" stays (it opens only
        while they are an administrator: web/views/join.py)."""
        if not event.event_type.video_conferencing:
            await tx.execute("DELETE FROM join_links WHERE event_id = ?", (event.id,))
            return
        linked = {("staff", s.id) for s in event.staff} | {
            ("patient", p.id) for p in event.patients
        }
        for row in await tx.fetchall(
            "SELECT id, kind, person_id FROM join_links"
            " WHERE event_id = ? AND kind != 'public' AND self_issued = 0",
            (event.id,),
        ):
            if (row["kind"], row["person_id"]) not in linked:
                await tx.execute("DELETE FROM join_links WHERE id = ?", (row["id"],))
        wanted: list[tuple[LinkKind, int | None]] = [("staff", s.id) for s in event.staff]
        wanted += [("patient", p.id) for p in event.patients]
        if event.event_type.public_conference:
            wanted.append(("public", None))
        else:
            await tx.execute(
                "DELETE FROM join_links WHERE event_id = ? AND kind = 'public'", (event.id,)
            )
        for kind, person_id in wanted:
            await self._links.ensure(tx, event.id, kind, person_id)

    async def _queue(
        self,
        tx: Transaction,
        event: Event,
        kind: MessageKind,
        channel: Channel,
        person_kind: PersonKind,
        person: Staff | Patient,
    ) -> bool:
        if channel == "email" and not person.email:
            return False
        await outbox.enqueue(tx, kind, channel, event.id, person_kind, person.id)
        return True

    async def _queue_for_everyone(
        self, tx: Transaction, event: Event, kind: MessageKind
    ) -> SavedEvent:
        emailed: list[str] = []
        not_emailed: list[str] = []
        people: list[tuple[PersonKind, Staff | Patient]] = [("staff", s) for s in event.staff]
        people += [("patient", p) for p in event.patients]
        for person_kind, person in people:
            queued = await self._queue(tx, event, kind, "email", person_kind, person)
            (emailed if queued else not_emailed).append(person.name)
        return SavedEvent(event, emailed, not_emailed)
