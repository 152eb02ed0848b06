"""A server killed outright (SIGKILL: a crash, a power cut) in the middle of a
recording: what was recorded up to then is kept, playable, and shown as interrupted."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from clinicconf import accounts
from clinicconf.accounts import StaffUser
from clinicconf.bench.server import bench_settings, running_server, schedule_conference
from clinicconf.db import Database
from clinicconf.recording.files import COMPOSED, track_path
from clinicconf.sfu import ice
from clinicconf.web.middleware import SESSION_COOKIE

from ...support.media_peers import enter
from ...support.recorded_media import COMPOSE_SECONDS, last_frame_time, start_recorded
from ...support.servers import wait_until

RECORDED_SECONDS = 6.0
# "Plays up to within a few seconds of the kill".
LOST_AT_MOST_SECONDS = 2.0


async def host_session(settings_db: Path) -> str:
    """A signed-in session for the host, as their browser would hold after signing in."""
    db = await Database.open(settings_db)
    try:
        row = await db.fetchone("SELECT id, name, email FROM staff")
        assert row is not None
        user = StaffUser(row["id"], row["name"], row["email"], is_admin=True)
        return await accounts.start_session(db, user)
    finally:
        await db.close()


async def test_a_recording_survives_the_server_being_killed(tmp_path: Path) -> None:
    settings = bench_settings(tmp_path / "data")
    ice.install(settings)  # the participants' aiortc, on loopback as the server's
    host_url, public_url = await schedule_conference(settings)
    async with aiohttp.ClientSession() as http:
        async with running_server(settings, tmp_path / "first.log") as server:
            host, guest = await start_recorded(http, host_url, public_url)
            began = time.monotonic()
            for participant in (host, guest):
                await enter(participant)

            async def media_flows() -> bool:
                return (guest.id, "video") in await host.receiving(0.5)

            await wait_until(media_flows)
            while time.monotonic() - began < RECORDED_SECONDS:
                await host.receiving(0.5)
            server.kill()
            killed_after = time.monotonic() - began
            await server.wait()
            for participant in (host, guest):
                await participant.close()

        # What was written before the kill plays, up to about the kill.
        directory = settings.recordings_dir / "1"
        for participant in (host, guest):
            for kind in ("audio", "video"):
                played = last_frame_time(track_path(directory, participant.id, kind))
                assert played > killed_after - LOST_AT_MOST_SECONDS, (kind, played)

        # After the restart the recording is listed as interrupted, and composed from
        # what there is.
        session = await host_session(settings.database_path)
        async with running_server(settings, tmp_path / "second.log"):
            page_url = f"http://{settings.host}:{settings.port}/recordings/1"
            cookies = {SESSION_COOKIE: session}

            async def composed() -> bool:
                async with http.get(page_url, cookies=cookies) as response:
                    assert response.status == 200
                    page = await response.text()
                return "Interrupted" in page and "recording-player" in page

            await wait_until(composed, within=COMPOSE_SECONDS)
        assert last_frame_time(directory / COMPOSED) > killed_after - LOST_AT_MOST_SECONDS
