"""What a conference remembers across a server restart (migrations/0004, 0005, 0007, 0008):
whether it started or ended (and in which times of its event), the host's options, and
for each person their participant id, what the moderator allows them and shows of them,
whether they are kept out, and a removed guest's address. Written as it changes (by
one `StateSaver` per conference, which tries again while the database is held by
another process); read when the conference is opened again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from .. import audit
from ..db import Database, from_db_time, to_db_time

log = logging.getLogger(__name__)

# A write of the conference's state that failed (the database held by another
# process) is tried again after this long, until it is written.
SAVE_RETRY_SECONDS: Final = 2.0

EndedBy = Literal["host", "time"]
# The event's start and end.
Slot = tuple[datetime, datetime]


@dataclass
class SavedPerson:
    public_id: str
    permission: str
    shown: bool
    # Why they are kept out (a `Closing`: removed, turned away), if they are.
    kept_out: str | None = None
    let_in: bool = False
    # Where a removed guest came from: newcomers from there wait to be let in.
    barred_address: str | None = None

    @property
    def got_in(self) -> bool:
        return bool(self.public_id)  # an id is given on the way in


@dataclass
class SavedConference:
    started_at: datetime | None = None
    ended_by: EndedBy | None = None
    # The event's times when the conference ended; None before it ended.
    ended_slot: Slot | None = None
    options: dict[str, Any] = field(default_factory=dict)
    people: dict[str, SavedPerson] = field(default_factory=dict)


def person_key(identity_key: str) -> str:
    """How a person is stored: a guest's browser key is as good as a password for their
    presence, so only its hash is kept."""
    kind, _, rest = identity_key.partition(":")
    if kind == "guest":
        return "guest:" + hashlib.sha256(rest.encode()).hexdigest()
    return identity_key


class ConferenceStates:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self, event_id: int) -> SavedConference:
        saved = SavedConference()
        row = await self._db.fetchone(
            "SELECT * FROM conference_state WHERE event_id = ?", (event_id,)
        )
        if row is not None:
            saved.started_at = from_db_time(row["started_at"]) if row["started_at"] else None
            saved.ended_by = row["ended_by"]
            if row["ended_starts_at"] is not None:
                saved.ended_slot = (
                    from_db_time(row["ended_starts_at"]),
                    from_db_time(row["ended_ends_at"]),
                )
            saved.options = json.loads(row["options"])
        for person in await self._db.fetchall(
            "SELECT * FROM conference_people WHERE event_id = ?", (event_id,)
        ):
            saved.people[person["person_key"]] = SavedPerson(
                person["public_id"],
                person["permission"],
                bool(person["shown"]),
                person["kept_out"],
                bool(person["let_in"]),
                person["barred_address"],
            )
        return saved

    async def save_conference(
        self,
        event_id: int,
        started_at: datetime | None,
        ended_by: EndedBy | None,
        ended_slot: Slot | None,
        options: dict[str, Any],
    ) -> None:
        starts_at, ends_at = (None, None) if ended_slot is None else map(to_db_time, ended_slot)
        await self._db.execute(
            "INSERT INTO conference_state"
            " (event_id, started_at, ended_by, ended_starts_at, ended_ends_at, options)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET"
            " started_at = excluded.started_at, ended_by = excluded.ended_by,"
            " ended_starts_at = excluded.ended_starts_at, ended_ends_at = excluded.ended_ends_at,"
            " options = excluded.options",
            (
                event_id,
                None if started_at is None else to_db_time(started_at),
                ended_by,
                starts_at,
                ends_at,
                json.dumps(options),
            ),
        )

    async def open_again_if_moved(self, event_id: int, slot: Slot) -> bool:
        """An ended conference whose event now has other times than those it ended in
        is opened again, as before its start (the caller checks those times are ahead);
        True if it was. Decided and written in one transaction, audited with it."""
        starts_at, ends_at = map(to_db_time, slot)
        async with self._db.transaction() as tx:
            reopened = await tx.fetchone(
                "UPDATE conference_state SET started_at = NULL, ended_by = NULL,"
                " ended_starts_at = NULL, ended_ends_at = NULL"
                " WHERE event_id = ? AND ended_by IS NOT NULL"
                " AND (ended_starts_at IS NOT ? OR ended_ends_at IS NOT ?) RETURNING event_id",
                (event_id, starts_at, ends_at),
            )
            if reopened is not None:
                await audit.record(
                    tx, audit.SYSTEM, "conference_reopened", event_id=event_id, by="rescheduled"
                )
        return reopened is not None

    async def save_person(self, event_id: int, key: str, person: SavedPerson) -> None:
        await self._db.execute(
            "INSERT INTO conference_people"
            " (event_id, person_key, public_id, permission, shown, kept_out, let_in,"
            " barred_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id, person_key) DO UPDATE SET"
            " public_id = excluded.public_id, permission = excluded.permission,"
            " shown = excluded.shown, kept_out = excluded.kept_out, let_in = excluded.let_in,"
            " barred_address = excluded.barred_address",
            (
                event_id,
                key,
                person.public_id,
                person.permission,
                person.shown,
                person.kept_out,
                person.let_in,
                person.barred_address,
            ),
        )

    async def forget_person(self, event_id: int, key: str) -> None:
        await self._db.execute(
            "DELETE FROM conference_people WHERE event_id = ? AND person_key = ?",
            (event_id, key),
        )


class StateSaver:
    """One conference's writes: what changed is marked unsaved and written soon, in
    order, by one task at a time; each mark is taken off only once it is written.
    `people` is what is kept of each person, as written or about to be."""

    def __init__(
        self,
        states: ConferenceStates,
        event_id: int,
        current: Callable[[], SavedConference],
        keep_trying: Callable[[], bool],
    ) -> None:
        self._states = states
        self._event_id = event_id
        # The conference's own state as it is now (its people are in `people`).
        self._current = current
        # False once the conference is over for this server: no more retries.
        self._keep_trying = keep_trying
        self.people: dict[str, SavedPerson] = {}
        self._unsaved_state = False
        self._unsaved_people: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def load(self) -> SavedConference:
        saved = await self._states.load(self._event_id)
        self.people = saved.people
        return saved

    def state_changed(self) -> None:
        """Write the conference's own state (started, ended, options), soon."""
        self._unsaved_state = True
        self._save_soon()

    def person_changed(self, key: str, person: SavedPerson) -> None:
        self.people[key] = person
        self._unsaved_people.add(key)
        self._save_soon()

    def forget(self, key: str) -> None:
        """A stored person the conference no longer keeps: gone from the database soon."""
        self.people.pop(key, None)
        self._unsaved_people.add(key)
        self._save_soon()

    async def saved(self) -> None:
        """Once what has changed so far is written, or could not be this time (then it
        is tried again): a request is answered after this, so that a change it made
        survives a crash right after."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def finish(self) -> None:
        """Whatever was not written yet is, before the server goes (or fails again)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    def _save_soon(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._save(), name="conference-save")

    async def _save(self) -> None:
        try:
            while self._unsaved_state or self._unsaved_people:
                await self._save_what_changed()
        except Exception:
            # The conference goes on meanwhile; a removal or a lock not written would be
            # forgotten at a restart, so it is tried again, in the background, until it is.
            if not self._failing:
                log.exception("the conference's state could not be saved; trying again")
            self._failing = True
            asyncio.get_running_loop().call_later(SAVE_RETRY_SECONDS, self._save_again)
        else:
            self._failing = False

    def _save_again(self) -> None:
        if self._keep_trying():
            self._save_soon()

    async def _save_what_changed(self) -> None:
        if self._unsaved_state:
            self._unsaved_state = False
            current = self._current()
            try:
                await self._states.save_conference(
                    self._event_id,
                    current.started_at,
                    current.ended_by,
                    current.ended_slot,
                    current.options,
                )
            except BaseException:
                self._unsaved_state = True
                raise
        while self._unsaved_people:
            key = next(iter(self._unsaved_people))
            self._unsaved_people.discard(key)
            person = self.people.get(key)
            try:
                if person is None:
                    await self._states.forget_person(self._event_id, key)
                else:
                    await self._states.save_person(self._event_id, key, person)
            except BaseException:
                self._unsaved_people.add(key)
                raise
