"""Faults the server meets in a clinic, with the real components: the database held
by another process (a backup tool, a second server started by mistake)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import db as storage
from clinicconf import keys
from clinicconf.db import Database
from clinicconf.errors import ServerBusy

from ..support.accounts import Account
from ..support.servers import hold_database

Client = TestClient[web.Request, web.Application]


async def add_patient(client: Client, staff: Account, number: str) -> tuple[int, Any, str | None]:
    """The API's answer to adding a patient: status, body, Retry-After."""
    body = {"name": f"Patient {number}", "record_number": number}
    async with client.post("/api/v1/patients", json=body, headers=staff.auth) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_a_database_held_by_another_process_is_waited_for_then_reported_busy(
    client: Client, app: web.Application, staff: Account
) -> None:
    path = app[keys.SETTINGS].database_path
    # Held briefly: the request waits for it, and succeeds.
    holder = await hold_database(path, 1.0)
    assert (await add_patient(client, staff, "R-1"))[0] == 201
    await holder.wait()

    # Held longer than the server waits: a clear answer to try again, nothing saved.
    holder = await hold_database(path, 8.0)
    status, body, retry_after = await add_patient(client, staff, "R-2")
    assert (status, body["error"]["code"], retry_after) == (503, "busy", "5")
    await holder.wait()
    assert (await add_patient(client, staff, "R-2"))[0] == 201
    async with client.get("/api/v1/patients", headers=staff.auth) as resp:
        listed = await resp.json()
    assert [p["record_number"] for p in listed].count("R-2") == 1


async def test_only_a_held_database_is_server_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "BUSY_TIMEOUT_MS", 50)  # a short wait, for a fast test
    path = tmp_path / "clinic.db"
    db = await Database.open(path)
    try:
        await db.execute("CREATE TABLE notes (text TEXT)")
        with closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(ServerBusy):
                await db.execute("INSERT INTO notes VALUES ('kept out')")
            holder.execute("COMMIT")
        await db.execute("INSERT INTO notes VALUES ('let in')")
        assert [row["text"] for row in await db.fetchall("SELECT text FROM notes")] == ["let in"]
        # Any other trouble with a statement stays what it is.
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.fetchall("SELECT * FROM missing")
    finally:
        await db.close()
