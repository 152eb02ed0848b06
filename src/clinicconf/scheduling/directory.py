"""Adding to the directory: staff accounts (the first administrator's included),
patients and event types, each checked, kept unique and audited."""

from __future__ import annotations

from dataclasses import replace

from .. import audit
from ..accounts import StaffUser, setup_token_valid
from ..db import Database, Transaction, to_db_time, utc_now
from ..errors import Conflict, PermissionDenied
from ..schedule import (
    EventType,
    EventTypeInput,
    Patient,
    PatientInput,
    Staff,
    StaffInput,
    check_event_type,
    clean_email,
    clean_name,
    clean_phone,
    require_admin,
)


class Directory:
    def __init__(self, db: Database, phone_region: str) -> None:
        self._db = db
        # Where a phone number written without a country code is.
        self._phone_region = phone_region

    async def create_staff(
        self, user: StaffUser | None, data: StaffInput, password_hash: str | None = None
    ) -> Staff:
        """user None: the command line, which acts as the system."""
        if user is not None:
            require_admin(user)
        async with self._db.transaction() as tx:
            return await self._insert_staff(
                tx, user.actor if user else audit.SYSTEM, data, password_hash
            )

    async def create_first_admin(
        self, setup_token: str, data: StaffInput, password_hash: str
    ) -> Staff:
        """The first-run setup link's account; the link works once, and only while
        there is no staff account at all."""
        async with self._db.transaction() as tx:
            if not await setup_token_valid(tx, setup_token):
                raise PermissionDenied("This setup link has been used or has expired.")
            await tx.execute("DELETE FROM setup_tokens")
            return await self._insert_staff(
                tx, audit.SYSTEM, replace(data, is_admin=True), password_hash
            )

    async def _insert_staff(
        self, tx: Transaction, actor: audit.Actor, data: StaffInput, password_hash: str | None
    ) -> Staff:
        name = clean_name(data.name)
        email = clean_email(data.email, required=True) or ""
        phone = clean_phone(data.phone, self._phone_region)
        if await tx.fetchone("SELECT 1 FROM staff WHERE email = ?", (email,)):
            raise Conflict("A staff member with this email exists already.", "email")
        staff_id = await tx.execute(
            "INSERT INTO staff (name, email, phone, password_hash, is_admin, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, email, phone, password_hash, int(data.is_admin), to_db_time(utc_now())),
        )
        await audit.record(tx, actor, "staff_created", subject=("staff", staff_id))
        return Staff(staff_id, name, email, phone, data.is_admin)

    async def create_patient(self, user: StaffUser, data: PatientInput) -> Patient:
        name = clean_name(data.name)
        record_number = clean_name(data.record_number, "record_number")
        email = clean_email(data.email, required=False)
        phone = clean_phone(data.phone, self._phone_region)
        async with self._db.transaction() as tx:
            if await tx.fetchone(
                "SELECT 1 FROM patients WHERE record_number = ?", (record_number,)
            ):
                raise Conflict("A patient with this record number exists already.", "record_number")
            patient_id = await tx.execute(
                "INSERT INTO patients (name, email, phone, record_number, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, email, phone, record_number, to_db_time(utc_now())),
            )
            await audit.record(tx, user.actor, "patient_created", subject=("patient", patient_id))
        return Patient(patient_id, name, email, phone, record_number)

    async def create_event_type(self, user: StaffUser, data: EventTypeInput) -> EventType:
        require_admin(user)
        name = check_event_type(data)
        async with self._db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM event_types WHERE name = ?", (name,)):
                raise Conflict("An event type with this name exists already.", "name")
            type_id = await tx.execute(
                "INSERT INTO event_types (name, colour, video_conferencing, public_conference)"
                " VALUES (?, ?, ?, ?)",
                (name, data.colour, int(data.video_conferencing), int(data.public_conference)),
            )
            await audit.record(
                tx, user.actor, "event_type_created", subject=("event_type", type_id)
            )
        return EventType(
            type_id, name, data.colour, data.video_conferencing, data.public_conference
        )
