"""Recordings in the patient record, through the real app and real files: the
patient's and the event's pages list them, a recording's page shows its progress,
its player and its tracks, its files are served with Range requests, plays,
downloads and deletions are audited, and nobody but the event's staff and the
administrators reaches one."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from clinicconf import audit, keys
from clinicconf.recording.files import COMPOSED, track_path

from ..support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from ..support.api import call
from ..support.clinic import CLINIC_ZONE, Clinic, csrf_token, sign_in, text
from ..support.recordings import (
    COMPOSED_MS,
    PAT,
    SAM,
    Media,
    compose,
    recording_of,
    store_of,
    write_track,
)

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def other(app: web.Application) -> Account:
    """A staff member who did not take part in the recorded conference."""
    return await make_account(app, "Olive Other", "olive@clinic.test", STAFF_PASSWORD, admin=False)


@pytest.fixture
async def administrator(app: web.Application) -> Account:
    # build_clinic's administrator has no password: this one signs in.
    return await make_account(app, "Alex Admin", "alex@clinic.test", ADMIN_PASSWORD, admin=True)


async def follow_up(clinic: Clinic) -> int:
    """Sam Staff's telehealth follow-up with Pat Patient; its id."""
    saved = await clinic.event(
        "Follow-up",
        clinic.telehealth,
        "2030-05-06T10:00",
        "2030-05-06T10:30",
        patients=[clinic.pat],
    )
    return saved.event.id


async def ready_recording(app: web.Application, media: Media, clinic: Clinic) -> int:
    recording_id = await recording_of(app, media, await follow_up(clinic))
    await compose(app, media, recording_id)
    return recording_id


def cells(html: str, row_class: str) -> list[str]:
    """The cells of the table row with this class, as HTML."""
    match = re.search(rf'<tr class="{row_class}">(.*?)</tr>', html, re.S)
    assert match, f"no {row_class} row"
    return [cell.strip() for cell in re.findall(r"<td>(.*?)</td>", match.group(1), re.S)]


def track_table(page: str) -> list[list[str]]:
    """The rows of a recording page's "Separate tracks" table, as text."""
    tracks = page[page.index("Separate tracks") :]
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", tracks, re.S)
        if "<td>" in row
    ]


async def actions(app: web.Application, event_id: int) -> list[tuple[str, int | None, Any]]:
    """The audit log's recording entries: action, staff member, detail."""
    return [
        (row["action"], row["actor_id"], json.loads(row["detail"]))
        for row in await audit.entries(app[keys.DATABASE], event_id=event_id)
        if row["action"].startswith("recording_") and row["action"] != "recording_started"
    ]


# --- the pages -------------------------------------------------------------------------


async def test_the_patient_and_event_pages_list_a_recording(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    recording_id = await ready_recording(app, media, clinic)
    recording = await store_of(app).get(recording_id)
    await sign_in(client, staff)

    listed = await text(client, "/patients")
    assert f'<a href="/patients/{clinic.pat.id}">Pat Patient</a>' in listed
    page = await text(client, f"/patients/{clinic.pat.id}")
    assert "<h1>Pat Patient</h1>" in page
    assert "MRN-1" in page and "pat@example.test" in page and "+12025550144" in page
    started = recording.started_at.astimezone(ZoneInfo(CLINIC_ZONE))
    expected = [
        "Follow-up",
        f'<a href="/recordings/{recording_id}?back=/patients/{clinic.pat.id}">'
        f"{started:%a %d %b %Y, %H:%M}</a>",
        "12 min 5 s",
        "48.2 MB",
        "Sam Staff, Pat Patient",
        "Ready",
    ]
    assert cells(page, "recording-ready") == expected
    assert "not shown to you" not in page

    # The event's page lists it alike, leading back to itself.
    event_page = await text(client, f"/events/{recording.event_id}")
    listed_there = cells(event_page[event_page.index("<h2>Recordings</h2>") :], "recording-ready")
    assert listed_there == [
        cell.replace(f"/patients/{clinic.pat.id}", f"/events/{recording.event_id}")
        for cell in expected
    ]
    # Quinn was not in the conference: nothing in their record.
    assert "No recordings." in await text(client, f"/patients/{clinic.quinn.id}")


async def test_the_recording_page_plays_it_and_lists_each_track(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    recording_id = await ready_recording(app, media, clinic)
    event_id = (await store_of(app).get(recording_id)).event_id
    await sign_in(client, staff)
    page = await text(client, f"/recordings/{recording_id}")
    files = f"/recordings/{recording_id}/files/"

    assert f'<a href="/events/{event_id}">Follow-up</a>' in page
    assert f'<a href="/patients/{clinic.pat.id}">Pat Patient</a>' in page
    player = f'<video class="recording-player" controls preload="none" src="{files}{COMPOSED}"'
    assert player in page
    assert "<progress" not in page
    rows = track_table(page)
    assert [row[:2] for row in rows] == [
        ["Sam Staff", "Audio"],
        ["Sam Staff", "Video"],
        ["Pat Patient", "Audio"],
        ["Pat Patient", "Video"],
    ]
    assert all(re.fullmatch(r"\d+\.\d kB", row[2]) for row in rows), rows
    assert f'<audio controls preload="none" src="{files}{SAM}-audio.webm"' in page
    assert f'<video class="track-player" controls preload="none" src="{files}{PAT}-video.webm"' in (
        page
    )
    assert f'href="{files}{PAT}-video.webm?download=1"' in page
    back = f"back=/patients/{clinic.pat.id}"
    assert f'href="/recordings/{recording_id}/delete?{back}">Delete recording</a>' in page


async def test_composing_shows_its_progress_and_the_player_once_ready(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    store = store_of(app)
    recording_id = await recording_of(app, media, await follow_up(clinic))
    csrf = await sign_in(client, staff)
    path = f"/recordings/{recording_id}"
    assert "Recording…" in await text(client, path)

    await store.finished(recording_id)
    await store.progress(recording_id, 0.42)
    page = await text(client, path)
    assert re.search(r'<progress id="compose-progress" max="100" value="42"', page)
    assert '<span id="compose-percent">42 %</span>' in page
    assert '<script type="module" src="/static/recording.js"></script>' in page
    assert 'class="recording-player"' not in page
    async with client.get(path + "/status", headers={"Accept": "application/json"}) as resp:
        assert await resp.json() == {"state": "composing", "progress": 42, "failure": None}
    patient_page = await text(client, f"/patients/{clinic.pat.id}")
    assert cells(patient_page, "recording-composing")[-1] == "Composing 42 %"

    # Its files are still being written: deleting is refused, and the files stay.
    message = "This recording cannot be deleted while it is being recorded or composed."
    assert message in await text(client, path + "/delete", status=409)
    async with client.post(path + "/delete", data={"csrf_token": csrf}) as resp:
        assert resp.status == 409
        assert message in await resp.text()
    assert store.directory(recording_id).exists()

    await compose(app, media, recording_id)
    page = await text(client, path)
    assert "<progress" not in page
    assert f'src="{path}/files/{COMPOSED}"' in page


async def test_a_failed_interrupted_recording_says_so_and_keeps_its_tracks(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    store = store_of(app)
    recording_id = await recording_of(app, media, await follow_up(clinic))
    # Someone whose arrival the server had no time to note before it stopped.
    unnoted = track_path(store.directory(recording_id), "0b0b0003", "audio")
    write_track(unnoted, "audio", media["audio"])
    # The server stopped mid-recording; at the restart the composer could not finish.
    assert await store.to_compose() == [recording_id]
    await store.failed(recording_id, "the video track could not be decoded")
    await sign_in(client, staff)

    page = await text(client, f"/recordings/{recording_id}")
    assert "Failed: the video track could not be decoded" in page
    assert "The separate tracks below are still available." in page
    assert "The server stopped during this recording. It was kept up to that point." in page
    assert page.count('controls preload="none"') == 5
    assert ["Participant", "Audio"] in [row[:2] for row in track_table(page)]
    listed = await text(client, f"/patients/{clinic.pat.id}")
    assert cells(listed, "recording-failed")[-1] == (
        'Failed: the video track could not be decoded <span class="tag">Interrupted</span>'
    )


# --- the files -------------------------------------------------------------------------


async def test_files_are_served_in_ranges_and_each_playback_is_audited_once(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    recording_id = await ready_recording(app, media, clinic)
    event_id = (await store_of(app).get(recording_id)).event_id
    composed = (store_of(app).directory(recording_id) / COMPOSED).read_bytes()
    await sign_in(client, staff)
    path = f"/recordings/{recording_id}/files/{COMPOSED}"

    # A player: partway in (whatever part is asked for, it is audited), then the
    # start, then further on as it buffers and seeks: one playback.
    for first, last, status in [(1000, 1999, 206), (0, None, 206), (300, None, 206)]:
        wanted = f"bytes={first}-{'' if last is None else last}"
        async with client.get(path, headers={"Range": wanted}) as resp:
            assert resp.status == status
            assert resp.headers["Content-Type"] == "video/webm"
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert "Content-Disposition" not in resp.headers
            assert await resp.read() == composed[first : None if last is None else last + 1]
    async with client.get(path) as resp:  # played again soon after: the same playback
        assert resp.status == 200
        assert await resp.read() == composed

    # A download asking for its last bytes first is a download all the same.
    audio = f"/recordings/{recording_id}/files/{PAT}-audio.webm?download=1"
    async with client.get(audio, headers={"Range": "bytes=-100"}) as resp:
        assert resp.status == 206
    async with client.get(audio) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/webm"
        assert resp.headers["Content-Disposition"] == (
            f'attachment; filename="recording-{recording_id}-{PAT}-audio.webm"'
        )
        downloaded = await resp.read()
    with av.open(io.BytesIO(downloaded), "r") as container:
        decoded = list(container.decode(audio=0))
    assert len(decoded) == len(media["audio"])

    played = {"recording": recording_id, "file": COMPOSED}
    assert await actions(app, event_id) == [
        ("recording_played", staff.id, played),
        (
            "recording_downloaded",
            staff.id,
            {"recording": recording_id, "file": f"{PAT}-audio.webm"},
        ),
    ]
    # A name that is not one of its files is not served.
    await text(client, f"/recordings/{recording_id}/files/timeline.jsonl", status=404)
    await text(client, f"/recordings/{recording_id}/files/..%2Fclinicconf.sqlite3", status=404)


# --- deleting --------------------------------------------------------------------------


async def test_deleting_asks_first_then_removes_the_files_from_every_list(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    store = store_of(app)
    recording_id = await ready_recording(app, media, clinic)
    event_id = (await store.get(recording_id)).event_id
    csrf = await sign_in(client, staff)
    path = f"/recordings/{recording_id}/delete"

    confirm = await text(client, path)
    assert "Delete the recording of Follow-up?" in confirm
    assert f'<form method="post" action="{path}">' in confirm
    async with client.post(path, data={"csrf_token": "forged"}) as resp:
        assert resp.status == 403
    assert store.directory(recording_id).exists()

    async with client.post(path, data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == f"/patients/{clinic.pat.id}?recording_deleted=1"
    page = await text(client, resp.headers["Location"])
    assert "Recording deleted." in page and "No recordings." in page
    assert not store.directory(recording_id).exists()
    assert not list(store.directory(recording_id).parent.iterdir())
    assert "No recordings." in await text(client, f"/events/{event_id}")
    await text(client, f"/recordings/{recording_id}", status=404)
    assert await actions(app, event_id) == [
        ("recording_deleted", staff.id, {"recording": recording_id})
    ]


async def test_a_recording_in_no_patient_record_is_deleted_back_to_its_event(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    group = await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[]
    )
    recording_id = await recording_of(app, media, group.event.id)
    await compose(app, media, recording_id)
    csrf = await sign_in(client, staff)
    async with client.post(f"/recordings/{recording_id}/delete", data={"csrf_token": csrf}) as r:
        assert r.url.path == f"/events/{group.event.id}"
        assert "Recording deleted." in await r.text()


async def test_deleting_goes_back_to_the_page_the_recording_was_opened_from(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    from_event = await ready_recording(app, media, clinic)
    event_id = (await store_of(app).get(from_event)).event_id
    elsewhere = await ready_recording(app, media, clinic)
    csrf = await sign_in(client, staff)
    event_page = await text(client, f"/events/{event_id}")
    assert f'href="/recordings/{from_event}?back=/events/{event_id}"' in event_page
    confirm = await text(client, f"/recordings/{from_event}/delete?back=/events/{event_id}")
    assert f'<input type="hidden" name="back" value="/events/{event_id}">' in confirm

    deleted = {"csrf_token": csrf, "back": f"/events/{event_id}"}
    async with client.post(
        f"/recordings/{from_event}/delete", data=deleted, allow_redirects=False
    ) as resp:
        assert resp.headers["Location"] == f"/events/{event_id}?recording_deleted=1"
    # Anywhere but a patient's or an event's page of this server is not followed.
    away = {"csrf_token": csrf, "back": "//elsewhere.example/patients/1"}
    async with client.post(
        f"/recordings/{elsewhere}/delete", data=away, allow_redirects=False
    ) as resp:
        assert resp.headers["Location"] == f"/patients/{clinic.pat.id}?recording_deleted=1"


async def test_the_api_lists_describes_serves_and_deletes_a_recording(
    client: Client, app: web.Application, clinic: Clinic, staff: Account, media: Media
) -> None:
    store = store_of(app)
    recording_id = await ready_recording(app, media, clinic)
    event_id = (await store.get(recording_id)).event_id
    busy = await recording_of(app, media, await follow_up(clinic))

    listed = await call(
        client, staff, "GET", "/patients/{patient_id}/recordings", patient_id=clinic.pat.id
    )
    assert [r["id"] for r in listed["recordings"]] == [busy, recording_id]
    assert listed["not_shown"] == 0
    detail = await call(
        client, staff, "GET", "/recordings/{recording_id}", recording_id=recording_id
    )
    assert detail["state"] == "ready" and detail["duration_ms"] == COMPOSED_MS
    assert detail["present"] == [
        {"participant": SAM, "name": "Sam Staff", "kind": "staff"},
        {"participant": PAT, "name": "Pat Patient", "kind": "patient"},
    ]
    assert [(f["name"], f["kind"]) for f in detail["files"]] == [
        (COMPOSED, "composed"),
        (f"{SAM}-audio.webm", "audio"),
        (f"{SAM}-video.webm", "video"),
        (f"{PAT}-audio.webm", "audio"),
        (f"{PAT}-video.webm", "video"),
    ]
    video = URL(detail["files"][0]["url"])
    async with client.get(video.path, headers=staff.auth) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert await resp.read() == (store.directory(recording_id) / COMPOSED).read_bytes()

    async with client.delete(f"/api/v1/recordings/{busy}", headers=staff.auth) as resp:
        assert resp.status == 409
    async with client.delete(f"/api/v1/recordings/{recording_id}", headers=staff.auth) as resp:
        assert resp.status == 204
    assert not store.directory(recording_id).exists()
    await call(
        client, staff, "GET", "/recordings/{recording_id}", expect=404, recording_id=recording_id
    )
    assert [action for action, _, _ in await actions(app, event_id)] == [
        "recording_downloaded",
        "recording_deleted",
    ]


# --- who reaches a recording -----------------------------------------------------------


def recording_paths(recording_id: int) -> list[str]:
    base = f"/recordings/{recording_id}"
    return [base, base + "/status", base + "/delete", f"{base}/files/{COMPOSED}"]


async def test_only_the_event_staff_and_administrators_reach_a_recording(
    client: Client,
    app: web.Application,
    clinic: Clinic,
    staff: Account,
    other: Account,
    administrator: Account,
    media: Media,
) -> None:
    recording_id = await ready_recording(app, media, clinic)
    event_id = (await store_of(app).get(recording_id)).event_id

    await sign_in(client, administrator)
    for path in recording_paths(recording_id):
        async with client.get(path) as resp:
            assert resp.status == 200, path
    await call(
        client, administrator, "GET", "/recordings/{recording_id}", recording_id=recording_id
    )

    client.session.cookie_jar.clear()
    csrf = await sign_in(client, other)
    # Just as if it did not exist: the same answer as for an id that names nothing.
    nothing = await text(client, "/recordings/999", status=404)
    for path in recording_paths(recording_id):
        assert await text(client, path, status=404) == nothing
    async with client.post(f"/recordings/{recording_id}/delete", data={"csrf_token": csrf}) as r:
        assert r.status == 404
    for page in (f"/patients/{clinic.pat.id}", f"/events/{event_id}"):
        listed = await text(client, page)
        assert "1 recording is not shown to you" in listed
        assert f"/recordings/{recording_id}" not in listed and "12 min 5 s" not in listed

    found = await call(
        client, other, "GET", "/patients/{patient_id}/recordings", patient_id=clinic.pat.id
    )
    assert found == {"recordings": [], "not_shown": 1}
    for template in ("/recordings/{recording_id}", "/recordings/{recording_id}/files/{name}"):
        answer = await call(
            client, other, "GET", template, expect=404, recording_id=recording_id, name=COMPOSED
        )
        assert answer["error"]["message"] == "No such recording."
    async with client.delete(f"/api/v1/recordings/{recording_id}", headers=other.auth) as resp:
        assert resp.status == 404

    assert store_of(app).directory(recording_id).exists()
    # The administrator's page opened the player; the other staff member left no trace.
    assert {actor for _, actor, _ in await actions(app, event_id)} == {administrator.id}


async def test_signed_out_browsers_and_join_links_reach_no_recording(
    client: Client, app: web.Application, clinic: Clinic, media: Media
) -> None:
    # Under way, so that its join links open their pages.
    start = datetime.now(ZoneInfo(CLINIC_ZONE)) - timedelta(minutes=5)
    group = await clinic.event(
        "Group",
        clinic.group,
        f"{start:%Y-%m-%dT%H:%M}",
        f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M}",
        patients=[clinic.pat],
    )
    recording_id = await recording_of(app, media, group.event.id)
    await compose(app, media, recording_id)
    links = app[keys.SCHEDULER].links
    db = app[keys.DATABASE]
    join_links = [
        await links.url_for(db, group.event.id, "patient", clinic.pat.id),
        await links.url_for(db, group.event.id, "public", None),
    ]

    for link in join_links:
        assert link is not None
        await text(client, URL(link).path)  # the link holder's landing page opens
        for path in [f"/patients/{clinic.pat.id}", *recording_paths(recording_id)]:
            async with client.get(path, allow_redirects=False) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == str(URL("/signin").with_query(next=path))
        async with client.post(
            f"/recordings/{recording_id}/delete",
            data={"csrf_token": csrf_token(client)},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
        # A join link's token is no API token.
        bearer = {"Authorization": f"Bearer {URL(link).name}"}
        for method, path in [
            ("GET", f"/patients/{clinic.pat.id}/recordings"),
            ("GET", f"/recordings/{recording_id}"),
            ("GET", f"/recordings/{recording_id}/files/{COMPOSED}"),
            ("DELETE", f"/recordings/{recording_id}"),
        ]:
            for headers in ({}, bearer):
                async with client.request(method, "/api/v1" + path, headers=headers) as resp:
                    assert resp.status == 401
    assert store_of(app).directory(recording_id).exists()
    assert await actions(app, group.event.id) == []
