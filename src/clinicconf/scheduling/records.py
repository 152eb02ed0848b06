"""Reading the schedule from the database: the one place that turns its rows into
the model's values (clinicconf.schedule).

ScheduleRecords is also what the outbox reads an event and its recipients through
when it composes a message (notify.messages.EventReader)."""

from __future__ import annotations

from datetime import datetime

from ..db import Database, Row, Transaction, from_db_time, to_db_time
from ..errors import NotFound
from ..schedule import Event, EventType, Patient, Staff


def _staff(row: Row) -> Staff:
    return Staff(row["id"], row["name"], row["email"], row["phone"], bool(row["is_admin"]))


def _patient(row: Row) -> Patient:
    return Patient(row["id"], row["name"], row["email"], row["phone"], row["record_number"])


def _event_type(row: Row) -> EventType:
    return EventType(
        row["id"],
        row["name"],
        row["colour"],
        bool(row["video_conferencing"]),
        bool(row["public_conference"]),
    )


async def load_event(tx: Transaction, event_id: int) -> Event:
    """An event with its type and people, read in the caller's transaction so that
    the parts agree with each other."""
    row = await tx.fetchone("SELECT * FROM events WHERE id = ?", (event_id,))
    if row is None:
        raise NotFound("No such event.")
    type_row = await tx.fetchone("SELECT * FROM event_types WHERE id = ?", (row["event_type_id"],))
    assert type_row is not None, "a foreign key keeps the event's type"
    staff = await tx.fetchall(
        "SELECT staff.* FROM event_staff JOIN staff ON staff.id = event_staff.staff_id"
        " WHERE event_id = ? ORDER BY staff.name, staff.id",
        (event_id,),
    )
    patients = await tx.fetchall(
        "SELECT patients.* FROM event_patients"
        " JOIN patients ON patients.id = event_patients.patient_id"
        " WHERE event_id = ? ORDER BY patients.name, patients.id",
        (event_id,),
    )
    return Event(
        id=row["id"],
        title=row["title"],
        event_type=_event_type(type_row),
        start=from_db_time(row["start_at"]),
        end=from_db_time(row["end_at"]),
        status=row["status"],
        record_patient_id=row["record_patient_id"],
        sequence=row["sequence"],
        staff=[_staff(r) for r in staff],
        patients=[_patient(r) for r in patients],
    )


class ScheduleRecords:
    """Staff, patients, event types and events as they are stored now."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_staff(self) -> list[Staff]:
        rows = await self._db.fetchall("SELECT * FROM staff ORDER BY name, id")
        return [_staff(r) for r in rows]

    async def get_staff(self, staff_id: int) -> Staff:
        row = await self._db.fetchone("SELECT * FROM staff WHERE id = ?", (staff_id,))
        if row is None:
            raise NotFound("No such staff member.")
        return _staff(row)

    async def list_patients(self) -> list[Patient]:
        rows = await self._db.fetchall("SELECT * FROM patients ORDER BY name, id")
        return [_patient(r) for r in rows]

    async def get_patient(self, patient_id: int) -> Patient:
        row = await self._db.fetchone("SELECT * FROM patients WHERE id = ?", (patient_id,))
        if row is None:
            raise NotFound("No such patient.")
        return _patient(row)

    async def list_event_types(self) -> list[EventType]:
        rows = await self._db.fetchall("SELECT * FROM event_types ORDER BY name, id")
        return [_event_type(r) for r in rows]

    async def get_event(self, event_id: int) -> Event:
        async with self._db.transaction() as tx:
            return await load_event(tx, event_id)

    async def events_between(self, start: datetime, end: datetime) -> list[Event]:
        """Events overlapping [start, end), cancelled ones included."""
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM events WHERE start_at < ? AND end_at > ? ORDER BY start_at, id",
                (to_db_time(end), to_db_time(start)),
            )
            return [await load_event(tx, row["id"]) for row in rows]
