"""Health information at rest is the server's user's only. Under the usual umask
(0o022, which leaves new files readable by every account on the machine), nothing
the server, its commands or its composer create under data_dir, nor any backup,
has a permission bit for the group or for others; `check` names what has."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from clinicconf import keys, ops
from clinicconf.app import create_app
from clinicconf.bench.server import bench_settings, running_server, schedule_conference
from clinicconf.config import Settings
from clinicconf.db import Database
from clinicconf.recording.compose import compose
from clinicconf.sfu import ice

from ..support.commands import clinicconf, findings
from ..support.composition import SHADES, steady, write_audio, write_timeline, write_video
from ..support.consultation import schedule_consultation
from ..support.media_peers import enter
from ..support.recorded_media import COMPOSE_SECONDS, start_recorded
from ..support.servers import AiohttpClient, wait_until

USUAL_UMASK = 0o022


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """This process, and every one it starts, creates files readable by everyone
    unless asked otherwise."""
    previous = os.umask(USUAL_UMASK)
    yield
    os.umask(previous)


def open_to_others(root: Path) -> list[str]:
    """Everything from `root` down that the group or other accounts may open, as
    `ls -l` shows its mode, with its path."""
    found = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{stat.filemode(mode)} {path.relative_to(root)}")
    return found


def names(root: Path) -> set[str]:
    return {path.name for path in root.rglob("*")}


async def test_a_recorded_conference_and_its_backup_are_the_server_users_only(
    tmp_path: Path, usual_umask: None
) -> None:
    settings = bench_settings(tmp_path / "data")
    ice.install(settings)  # the participants' aiortc, on loopback as the server's
    host_url, public_url = await schedule_conference(settings)
    backup = tmp_path / "backup"
    async with (
        aiohttp.ClientSession() as http,
        running_server(settings, tmp_path / "server.log"),
    ):
        host, guest = await start_recorded(http, host_url, public_url)
        for participant in (host, guest):
            await enter(participant)

        async def media_flows() -> bool:
            return (guest.id, "video") in await host.receiving(0.5)

        await wait_until(media_flows)
        began = time.monotonic()
        while time.monotonic() - began < 2.0:
            await host.receiving(0.5)
        await host.send("end")
        await guest.expect("ended")
        for participant in (host, guest):
            await participant.close()
        await composed(settings)

        # The commands, while the server runs (its WAL and shared memory open).
        code, _, err = await clinicconf("--data-dir", str(settings.data_dir), "backup", str(backup))
        assert code == 0, err
        assert open_to_others(settings.data_dir) == []
        assert {"clinicconf.sqlite3-wal", "clinicconf.sqlite3-shm"} <= names(settings.data_dir)
        code, out, err = await clinicconf("--data-dir", str(settings.data_dir), "check")
        assert findings(out)["file permissions"][0] == "ok", out + err

    assert open_to_others(settings.data_dir) == []
    assert {
        "clinicconf.sqlite3", "secret.key", "recordings", "tracks", "timeline.jsonl",
        "conference.webm", f"{host.id}-video.webm", f"{guest.id}-audio.webm",
    } <= names(settings.data_dir)  # fmt: skip
    assert open_to_others(backup) == []
    assert {"clinicconf.sqlite3", "secret.key", ops.RECORDINGS_INDEX} <= names(backup)


async def composed(settings: Settings) -> None:
    """Until the server has composed its one recording."""
    db = await Database.open(settings.database_path)
    try:

        async def ready() -> bool:
            row = await db.fetchone("SELECT state FROM recordings")
            assert row is None or row["state"] != "failed"
            return row is not None and row["state"] == "ready"

        await wait_until(ready, within=COMPOSE_SECONDS)
    finally:
        await db.close()


async def test_the_application_keeps_what_it_writes_its_users_only(
    usual_umask: None, aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    """The application factory without the command line (as the tests and the
    benchmarks use it), on a data directory an earlier version left open to all."""
    settings.recordings_dir.mkdir(parents=True)
    for directory in (settings.data_dir, settings.recordings_dir):
        directory.chmod(0o755)
    client = await aiohttp_client(create_app(settings))
    # A recording's folder, as the store makes it, and its files, as the recorder and
    # the composer write them.
    store = client.app[keys.RECORDINGS]
    recording = store.directory(await store.create((await schedule_consultation(client.app)).event))
    write_video(recording, "ann", 0, 1000, steady(SHADES["ann"]))
    write_audio(recording, "ann", 0, 1000, 440.0)
    write_timeline(
        recording,
        [{"t": 0, "recording": True, "video": ["ann"], "audio": ["ann"]}, {"t": 1000, "end": True}],
    )
    compose(recording)

    assert open_to_others(settings.data_dir) == []
    assert {
        "clinicconf.sqlite3", "clinicconf.sqlite3-wal", "clinicconf.sqlite3-shm", "secret.key",
        "tracks", "ann-video.webm", "ann-audio.webm", "timeline.jsonl", "conference.webm",
    } <= names(settings.data_dir)  # fmt: skip


async def test_check_names_what_other_accounts_can_open_and_the_fix(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await Database.open(settings.database_path)
    await db.close()
    settings.recordings_dir.mkdir(mode=0o700)
    recording = settings.recordings_dir / "7"
    recording.mkdir()
    recording.chmod(0o755)
    settings.database_path.chmod(0o644)

    await ops.check(settings)
    verdict, text = findings(capsys.readouterr().out)["file permissions"]
    assert verdict == "warning"
    assert text.startswith(f"2 of the files and folders in {settings.data_dir} can be opened")
    assert f"(e.g. {settings.database_path})" in text
    assert text.endswith(f"chmod -R go= {settings.data_dir}")

    # The command it names is the fix.
    program, *args = shlex.split(text.rpartition(": ")[2])
    fix = await asyncio.create_subprocess_exec(shutil.which(program) or program, *args)
    assert await fix.wait() == 0
    await ops.check(settings)
    assert findings(capsys.readouterr().out)["file permissions"][0] == "ok"
