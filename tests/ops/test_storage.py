"""The database and the join links' secrets."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.conference.identity import Closing
from clinicconf.conference.persistence import ConferenceStates
from clinicconf.db import Database, migration_files
from clinicconf.links import JoinLinks
from clinicconf.schedule import EventInput, EventTypeInput, PatientInput
from clinicconf.security import load_or_create_secret_key

from ..support.accounts import Account


async def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        first = await db.migrate()
        again = await db.migrate()
        recorded = [r["name"] for r in await db.fetchall("SELECT name FROM schema_migrations")]
        journal = await db.fetchone("PRAGMA journal_mode")
        foreign_keys = await db.fetchone("PRAGMA foreign_keys")
    finally:
        await db.close()
    assert first == [p.name for p in migration_files()] and first
    assert again == []
    assert recorded == first
    assert journal is not None and journal[0] == "wal"
    assert foreign_keys is not None and foreign_keys[0] == 1


async def test_who_was_kept_out_by_close_code_stays_kept_out_for_the_same_reason(
    tmp_path: Path,
) -> None:
    """Before migration 0008 the database held the close code a removed or turned
    away person's page was sent; their reason is kept across the upgrade."""
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in migration_files():
        if migration.name < "0008":
            (before / migration.name).write_text(migration.read_text())
    path = tmp_path / "db.sqlite3"
    db = await Database.open(path)
    try:
        await db.migrate(before)
        with closing(sqlite3.connect(path)) as old:  # no foreign keys: no event needed
            old.executemany(
                "INSERT INTO conference_people (event_id, person_key, public_id, permission,"
                " shown, barred) VALUES (1, ?, 'p', 'audio_video', 0, ?)",
                [("guest:removed", 4430), ("guest:turned", 4431), ("staff:1", None)],
            )
            old.commit()
        assert await db.migrate() == ["0008_kept_out_reasons.sql"]
        people = (await ConferenceStates(db).load(1)).people
    finally:
        await db.close()
    assert {key: person.kept_out for key, person in people.items()} == {
        "guest:removed": Closing.REMOVED,
        "guest:turned": Closing.TURNED_AWAY,
        "staff:1": None,
    }


async def _event_with_patient(app: web.Application, admin: Account) -> tuple[int, int]:
    scheduler = app[keys.SCHEDULER]
    user = StaffUser(admin.id, "Ada Admin", admin.email, True)
    video = await scheduler.create_event_type(user, EventTypeInput("Telehealth", True, False))
    patient = await scheduler.create_patient(user, PatientInput("Pat Patient", "MRN-1"))
    start = datetime.now(UTC) + timedelta(days=1)
    saved = await scheduler.create_event(
        user,
        EventInput(
            "Check-up", video.id, start, start + timedelta(hours=1), [admin.id], [patient.id]
        ),
    )
    return saved.event.id, patient.id


async def test_a_copy_of_the_database_alone_opens_no_link(
    app: web.Application, admin: Account, tmp_path: Path
) -> None:
    """Someone holding the database but not the server key can compute no token
    that the server accepts, and finds none stored."""
    event_id, patient_id = await _event_with_patient(app, admin)
    db = app[keys.DATABASE]
    settings = app[keys.SETTINGS]
    url = await app[keys.SCHEDULER].links.url_for(db, event_id, "patient", patient_id)
    assert url is not None
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 bits in URL-safe base64

    # The thief has a consistent copy of the whole database, as a backup would be.
    stolen = tmp_path / "stolen.sqlite3"
    with (
        closing(sqlite3.connect(settings.database_path)) as live,
        closing(sqlite3.connect(stolen)) as copy,
    ):
        live.backup(copy)
    assert token.encode() not in stolen.read_bytes()

    # The thief derives tokens with a key of their own: the server recognises none of them.
    thief_key = load_or_create_secret_key(tmp_path / "thief.key")
    thief_db = await Database.open(stolen)
    try:
        forged = await JoinLinks(thief_key, "http://x").url_for(
            thief_db, event_id, "patient", patient_id
        )
    finally:
        await thief_db.close()
    assert forged is not None
    forged_token = forged.rsplit("/", 1)[1]
    assert forged_token != token
    assert await app[keys.SCHEDULER].links.resolve(db, forged_token, "personal") is None
    assert await app[keys.SCHEDULER].links.resolve(db, token, "personal") is not None


async def test_the_server_key_is_private_and_stable(app: web.Application) -> None:
    path = app[keys.SETTINGS].secret_key_path
    assert path.stat().st_mode & 0o077 == 0
    assert load_or_create_secret_key(path) == app[keys.SECRET_KEY]
