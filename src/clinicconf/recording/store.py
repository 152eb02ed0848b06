"""Recordings in the database and on disk: their state, whose patient record they
belong to, who may reach them, and their deletion (files and all).

Both are settled while it records, never by later edits of its event: it is filed in
the records of the patients present while it recorded (and of the patient a Public
Conference is tied to), and it may be reached by the staff linked to the event when
it started and by the administrators (Recording.reachable_by)."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from .. import audit
from ..accounts import StaffUser
from ..db import Database, Row, Transaction, from_db_time, to_db_time, utc_now
from ..errors import Conflict, NotFound
from ..schedule import Event
from .files import COMPOSED, DamagedTrack, damaged_tracks, track_files

State = Literal["recording", "composing", "ready", "failed"]
NOT_DELETABLE: Final = (
    "This recording cannot be deleted while it is being recorded or composed."
    " Try again once it is ready."
)
# A clinician's requests for one file within this long are one play (or download).
ACCESS_REPEAT_SECONDS: Final = 600.0
# A deleted recording's directory, moved aside until its files are gone.
_DELETED: Final = "deleted-"


@dataclass(frozen=True)
class Attendee:
    """Someone who took part while the conference was recorded; `participant` is
    the id their track files are named by."""

    participant: str
    name: str
    kind: str
    # The staff member's or patient's id; None for a guest of the public link (and in
    # what was noted before migration 0006).
    person_id: int | None = None


@dataclass(frozen=True)
class RecordingFile:
    """One file of a recording a clinician can play or download."""

    name: str
    size_bytes: int
    participant: str | None = None  # a track's participant id; None for the composed file
    kind: str | None = None


@dataclass(frozen=True)
class FiledIn:
    """A patient whose record holds a recording."""

    id: int
    name: str


@dataclass(frozen=True)
class Recording:
    id: int
    event_id: int
    event_title: str
    started_at: datetime
    ended_at: datetime | None
    state: State
    interrupted: bool
    # Why it stopped before the conference's end, when the server said (a crash does not).
    interruption: str | None
    failure: str | None
    progress: float
    duration_ms: int | None
    size_bytes: int | None
    present: list[Attendee]
    # The patients in whose records it is filed, in the order of their names.
    filed_in: list[FiledIn]
    # The event's staff when it started: with the administrators, the only ones who
    # may reach it.
    staff_ids: frozenset[int]

    @property
    def patient_ids(self) -> frozenset[int]:
        return frozenset(patient.id for patient in self.filed_in)

    def reachable_by(self, user: StaffUser) -> bool:
        return user.is_admin or user.id in self.staff_ids

    @property
    def deletable(self) -> bool:
        """Not while its files are still being written or composed."""
        return self.state in ("ready", "failed")


_SELECT: Final = """
SELECT r.*, e.title AS event_title,
       (SELECT json_group_array(json_object('id', p.id, 'name', p.name))
        FROM recording_patients rp JOIN patients p ON p.id = rp.patient_id
        WHERE rp.recording_id = r.id) AS filed_in,
       (SELECT group_concat(staff_id) FROM recording_staff WHERE recording_id = r.id)
           AS staff_ids
FROM recordings r JOIN events e ON e.id = r.event_id
"""


def _ids(text: str | None) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",")) if text else frozenset()


def _recording(row: Row) -> Recording:
    return Recording(
        id=row["id"],
        event_id=row["event_id"],
        event_title=row["event_title"],
        started_at=from_db_time(row["started_at"]),
        ended_at=from_db_time(row["ended_at"]) if row["ended_at"] else None,
        state=row["state"],
        interrupted=bool(row["interrupted"]),
        interruption=row["interruption"],
        failure=row["failure"],
        progress=row["progress"],
        duration_ms=row["duration_ms"],
        size_bytes=row["size_bytes"],
        present=[Attendee(**a) for a in json.loads(row["present"])],
        filed_in=sorted(
            (FiledIn(**patient) for patient in json.loads(row["filed_in"])),
            key=lambda patient: (patient.name, patient.id),
        ),
        staff_ids=_ids(row["staff_ids"]),
    )


class Recordings:
    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self._root = root
        # (staff, recording, file, action) -> when it was last written to the audit log.
        self._accessed: dict[tuple[int, int, str, str], float] = {}

    def directory(self, recording_id: int) -> Path:
        return self._root / str(recording_id)

    # --- the recorder's side ---------------------------------------------------------

    async def create(self, event: Event) -> int:
        """A new recording of `event`: the event's staff now may reach it, for good;
        it is in the record a Public Conference is tied to, and goes into each
        patient's as they are noted present."""
        async with self._db.transaction() as tx:
            recording_id = await tx.execute(
                "INSERT INTO recordings (event_id, started_at) VALUES (?, ?)",
                (event.id, to_db_time(utc_now())),
            )
            await tx.executemany(
                "INSERT INTO recording_staff (recording_id, staff_id) VALUES (?, ?)",
                [(recording_id, staff.id) for staff in event.staff],
            )
            await _file_in_record_of_public_conference(tx, recording_id, event)
            await audit.record(
                tx, audit.SYSTEM, "recording_started", event_id=event.id, recording=recording_id
            )
        # Owner-only, as everything under data_dir is (owner_only.py): health information.
        self.directory(recording_id).mkdir(mode=0o700)
        return recording_id

    async def link_patients(self, recording_id: int, event: Event) -> None:
        """At the recording's end: also in the record the Public Conference is tied to
        by then (changed meanwhile). A linked patient who was not present never gets it."""
        async with self._db.transaction() as tx:
            await _file_in_record_of_public_conference(tx, recording_id, event)

    async def note_present(self, recording_id: int, present: list[Attendee]) -> None:
        """Everyone present in the recording so far; it goes into the record of each
        patient among them, as soon as they are (a crash later keeps it there)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE recordings SET present = ? WHERE id = ?",
                (json.dumps([vars(a) for a in present]), recording_id),
            )
            await _file_in(
                tx,
                recording_id,
                [a.person_id for a in present if a.kind == "patient" and a.person_id is not None],
            )

    async def finished(self, recording_id: int, *, interruption: str | None = None) -> None:
        """Written to its end, or stopped early for the reason `interruption`: next,
        it is composed."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE recordings SET state = 'composing', ended_at = ?,"
                " interrupted = ?, interruption = ? WHERE id = ?",
                (to_db_time(utc_now()), interruption is not None, interruption, recording_id),
            )
            if interruption is not None:
                row = await tx.fetchone(
                    "SELECT event_id FROM recordings WHERE id = ?", (recording_id,)
                )
                event_id = None if row is None else row["event_id"]
                await audit.record(
                    tx, audit.SYSTEM, "recording_stopped_early", event_id=event_id,
                    recording=recording_id,
                )  # fmt: skip

    async def failed(self, recording_id: int, reason: str) -> None:
        await self._db.execute(
            "UPDATE recordings SET state = 'failed', failure = ?,"
            " ended_at = coalesce(ended_at, ?) WHERE id = ?",
            (reason, to_db_time(utc_now()), recording_id),
        )

    # --- the composer's side ---------------------------------------------------------

    async def to_compose(self) -> list[int]:
        """At start-up: recordings the server stopped in the middle of are marked
        interrupted, and with those it had not finished composing, composed again."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE recordings SET state = 'composing', interrupted = 1"
                " WHERE state = 'recording'"
            )
            await tx.execute("UPDATE recordings SET progress = 0 WHERE state = 'composing'")
            rows = await tx.fetchall("SELECT id FROM recordings WHERE state = 'composing'")
        return [row["id"] for row in rows]

    async def progress(self, recording_id: int, fraction: float) -> None:
        await self._db.execute(
            "UPDATE recordings SET progress = ? WHERE id = ? AND state = 'composing'",
            (min(1.0, max(0.0, fraction)), recording_id),
        )

    async def ready(self, recording_id: int, duration_ms: int, size_bytes: int) -> None:
        await self._db.execute(
            "UPDATE recordings SET state = 'ready', progress = 1, duration_ms = ?,"
            " size_bytes = ?, failure = NULL WHERE id = ?",
            (duration_ms, size_bytes, recording_id),
        )

    # --- the clinicians' side --------------------------------------------------------

    async def get(self, recording_id: int) -> Recording:
        row = await self._db.fetchone(_SELECT + " WHERE r.id = ?", (recording_id,))
        if row is None:
            raise NotFound("No such recording.")
        return _recording(row)

    async def for_patient(self, patient_id: int) -> list[Recording]:
        rows = await self._db.fetchall(
            _SELECT + " JOIN recording_patients rp ON rp.recording_id = r.id"
            " WHERE rp.patient_id = ? ORDER BY r.started_at DESC, r.id DESC",
            (patient_id,),
        )
        return [_recording(row) for row in rows]

    async def for_event(self, event_id: int) -> list[Recording]:
        rows = await self._db.fetchall(
            _SELECT + " WHERE r.event_id = ? ORDER BY r.started_at DESC, r.id DESC", (event_id,)
        )
        return [_recording(row) for row in rows]

    def files(self, recording: Recording) -> list[RecordingFile]:
        """The composed file (when there is one) and every track file."""
        directory = self.directory(recording.id)
        found = []
        composed = directory / COMPOSED
        if recording.state == "ready" and composed.exists():
            found.append(RecordingFile(COMPOSED, composed.stat().st_size))
        for path, participant, kind in track_files(directory):
            found.append(RecordingFile(path.name, path.stat().st_size, participant, kind))
        return found

    def damaged(self, recording: Recording) -> list[DamagedTrack]:
        """The tracks that ended early because what they carried could not be kept."""
        return damaged_tracks(self.directory(recording.id))

    def file_path(self, recording: Recording, name: str) -> Path:
        """The path of one of `recording`'s files, by a name from `files()` only."""
        for known in self.files(recording):
            if known.name == name:
                subfolder = () if known.participant is None else ("tracks",)
                return self.directory(recording.id).joinpath(*subfolder, name)
        raise NotFound("No such file in this recording.")

    async def accessed(self, user: StaffUser, recording: Recording, action: str, file: str) -> None:
        """Write a clinician's play or download of a file into the audit log: once for
        all the requests a player makes while it plays (to buffer, to seek), and again
        once a while has passed."""
        now = time.monotonic()
        key = (user.id, recording.id, file, action)
        if now - self._accessed.get(key, -math.inf) < ACCESS_REPEAT_SECONDS:
            return
        self._accessed = {
            k: at for k, at in self._accessed.items() if now - at < ACCESS_REPEAT_SECONDS
        }
        self._accessed[key] = now
        async with self._db.transaction() as tx:
            await audit.record(
                tx,
                user.actor,
                action,
                event_id=recording.event_id,
                recording=recording.id,
                file=file,
            )

    async def delete(self, user: StaffUser, recording: Recording) -> None:
        """Remove the recording from every record, and its files from the disk. The
        directory is first moved aside in one step, so that the files of a recording
        no longer listed are never found again, even if removing them is cut short
        (`sweep` finishes the job at the next start)."""
        if not recording.deletable:
            raise Conflict(NOT_DELETABLE)
        doomed = self._root / f"{_DELETED}{recording.id}"
        directory = self.directory(recording.id)
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM recordings WHERE id = ?", (recording.id,))
            await audit.record(
                tx, user.actor, "recording_deleted", event_id=recording.event_id,
                recording=recording.id,
            )  # fmt: skip
            # Last before the commit: if it cannot be moved, the recording stays listed.
            if directory.exists():
                directory.rename(doomed)
        await asyncio.to_thread(_remove, doomed)

    def sweep(self) -> None:
        """At start-up: finish removing the files of recordings deleted before."""
        for doomed in self._root.glob(f"{_DELETED}*"):
            _remove(doomed)


async def _file_in_record_of_public_conference(
    tx: Transaction, recording_id: int, event: Event
) -> None:
    """A Public Conference's guests are anonymous: the clinic names the record it goes in."""
    if event.record_patient_id is not None:
        await _file_in(tx, recording_id, [event.record_patient_id])


async def _file_in(tx: Transaction, recording_id: int, patient_ids: list[int]) -> None:
    await tx.executemany(
        "INSERT OR IGNORE INTO recording_patients (recording_id, patient_id) VALUES (?, ?)",
        [(recording_id, patient_id) for patient_id in patient_ids],
    )


def _remove(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
