"""Recordings in the patient record: the patient's page with their recordings, a
recording's page (player, progress while it is composed, its separate tracks), its
files, its deletion, and the same under /api/v1.

Only the staff linked to its event when it started and the administrators may reach
a recording (Recording.reachable_by, on every page and API call here). For anyone
else it does not exist: the same 404 as for an id that names nothing, so that a page
or a token cannot learn that it is there.
Every play, download and deletion goes into the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web

from ... import keys
from ...accounts import StaffUser
from ...errors import Conflict, NotFound
from ...recording.files import COMPOSED, track_of
from ...recording.store import NOT_DELETABLE, Recording, RecordingFile, Recordings
from .. import api_models as models
from ..api_routes import PREFIX, Answer, ApiRoutes, path_id
from ..middleware import current_user, is_api, scheduler_of
from ..rendering import render

routes = web.RouteTableDef()
API: Final = ApiRoutes(routes)

RECORDING: Final = "/recordings/{recording_id}"
_BACK: Final = re.compile(r"/(patients|events)/[0-9]{1,18}")
FILE: Final = RECORDING + "/files/{name}"
_KIND_NAMES: Final = {"audio": "Audio", "video": "Video"}
_SIZE_UNITS: Final = ("kB", "MB", "GB", "TB")
# How the API's document words a refusal: one the token may not reach is one that is not.
NO_RECORDING: Final = {
    404: "No recording has this id, or it is not this staff member's: only the staff"
    " linked to the event when it was recorded and the administrators reach a recording."
}


def describe_duration(milliseconds: int) -> str:
    """'12 min 5 s', '1 h 0 min 3 s', '5 s'."""
    hours, rest = divmod(milliseconds // 1000, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {seconds} s"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def describe_size(size_bytes: int) -> str:
    """'48.2 MB': decimal units, as file managers show sizes."""
    if size_bytes < 1000:
        return f"{size_bytes} bytes"
    size = size_bytes / 1000
    for unit in _SIZE_UNITS[:-1]:
        if round(size, 1) < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} {_SIZE_UNITS[-1]}"


def percent(recording: Recording) -> int:
    """Composing progress as a whole percentage; 100 only once it is done."""
    return int(recording.progress * 100)


def describe_state(recording: Recording) -> str:
    if recording.state == "recording":
        return "Recording…"
    if recording.state == "composing":
        return f"Composing {percent(recording)} %"
    if recording.state == "ready":
        return "Ready"
    return f"Failed: {recording.failure}" if recording.failure else "Failed"


def duration_ms(recording: Recording) -> int | None:
    """The composed file's length once known, until then the recorded time."""
    if recording.duration_ms is not None:
        return recording.duration_ms
    if recording.ended_at is not None:
        return int((recording.ended_at - recording.started_at).total_seconds() * 1000)
    return None


def size_bytes(store: Recordings, recording: Recording) -> int:
    """The composed file's size once there is one, until then its tracks' so far."""
    if recording.size_bytes is not None:
        return recording.size_bytes
    return sum(f.size_bytes for f in store.files(recording))


@dataclass(frozen=True)
class RecordingRow:
    """A recording as the patient's page, the event's page and its own page show it."""

    recording: Recording
    duration: str
    size: str
    present: str
    # Whose records it is in: the patients present while it recorded.
    filed_in: str
    state: str

    @classmethod
    def of(cls, store: Recordings, recording: Recording) -> RecordingRow:
        duration = duration_ms(recording)
        return cls(
            recording=recording,
            duration="—" if duration is None else describe_duration(duration),
            size=describe_size(size_bytes(store, recording)),
            present=", ".join(a.name for a in recording.present) or "—",
            filed_in=", ".join(p.name for p in recording.filed_in) or "no patient's record",
            state=describe_state(recording),
        )


def split_reachable(user: StaffUser, recordings: list[Recording]) -> tuple[list[Recording], int]:
    """The recordings `user` may reach, and how many others there are."""
    reachable = [r for r in recordings if r.reachable_by(user)]
    return reachable, len(recordings) - len(reachable)


@dataclass(frozen=True)
class Listing:
    """The recordings of a patient or an event that a user may reach, and how many
    others there are (a count only: nothing else about them)."""

    rows: list[RecordingRow]
    hidden: int
    # The page listing them, which a recording opened from it leads back to.
    back: str


def listing(request: web.Request, user: StaffUser, recordings: list[Recording]) -> Listing:
    store = request.app[keys.RECORDINGS]
    reachable, hidden = split_reachable(user, recordings)
    return Listing([RecordingRow.of(store, r) for r in reachable], hidden, request.path)


def _back(request: web.Request, recording: Recording, given: str | None) -> str:
    """The page the recording was opened from (a patient's or its event's), to go back
    to after deleting it; only such a page of this server, whatever the link says."""
    if given is not None and _BACK.fullmatch(given):
        return given
    if recording.patient_ids:
        return f"/patients/{min(recording.patient_ids)}"
    return f"/events/{recording.event_id}"


@dataclass(frozen=True)
class TrackRow:
    """One participant's audio or video track, as the recording's page lists it."""

    name: str
    participant: str
    kind: str
    kind_name: str
    size: str


def participant_names(recording: Recording) -> dict[str, str]:
    """Who each participant id of the recording's files is, as noted while it recorded."""
    return {a.participant: a.name for a in recording.present}


def track_rows(recording: Recording, files: list[RecordingFile]) -> list[TrackRow]:
    """The track files, each with the name of the participant whose id names it;
    "Participant" when the recording does not tell (it was not noted in time)."""
    names = participant_names(recording)
    return [
        TrackRow(
            name=file.name,
            participant=names.get(file.participant, "Participant"),
            kind=file.kind,
            kind_name=_KIND_NAMES[file.kind],
            size=describe_size(file.size_bytes),
        )
        for file in files
        if file.participant is not None and file.kind is not None
    ]


@dataclass(frozen=True)
class DamageRow:
    """A track that ended early, as the recording's page explains it."""

    participant: str
    kind_name: str
    after: str  # how far into the recording
    why: str


def damage_rows(store: Recordings, recording: Recording) -> list[DamageRow]:
    names = participant_names(recording)
    return [
        DamageRow(
            participant=names.get(damage.participant, "Participant"),
            kind_name=_KIND_NAMES[damage.kind],
            after=describe_duration(damage.at_ms),
            why=damage.why,
        )
        for damage in store.damaged(recording)
    ]


async def reachable_recording(request: web.Request) -> Recording:
    """The recording the URL names, if the signed-in user may reach it; else 404."""
    user = current_user(request)
    recording = await request.app[keys.RECORDINGS].get(path_id(request, "recording_id"))
    if not recording.reachable_by(user):
        raise NotFound("No such recording.")
    return recording


def _serves_bytes(request: web.Request) -> bool:
    """Whether this request reads any of the file (a malformed Range is answered 416)."""
    if request.method != hdrs.METH_GET:
        return False
    try:
        request.http_range  # noqa: B018 (parsed to see whether it can be served)
    except ValueError:
        return False
    return True


async def _file_response(request: web.Request) -> web.FileResponse:
    """A recording's file, with Range requests (a player seeks), logged as played or
    downloaded (whatever part is asked for; a player's many requests for one
    playback are one entry: Recordings.accessed). The API's answer is always a
    download: a program saves the file."""
    user = current_user(request)
    recording = await reachable_recording(request)
    store = request.app[keys.RECORDINGS]
    name = request.match_info["name"]
    path = store.file_path(recording, name)
    track = track_of(path)  # None for the composed file
    kind = "video" if track is None else track[1]
    headers = {hdrs.CONTENT_TYPE: f"{kind}/webm"}
    download = is_api(request) or request.query.get("download") == "1"
    if download:
        headers[hdrs.CONTENT_DISPOSITION] = (
            f'attachment; filename="recording-{recording.id}-{name}"'
        )
    if _serves_bytes(request):
        action = "recording_downloaded" if download else "recording_played"
        await store.accessed(user, recording, action, file=name)
    return web.FileResponse(path, headers=headers)


def _refuse_while_busy(recording: Recording) -> None:
    """Deleting a recording while it is written or composed would pull its files
    away from the recorder or the composer (Recordings.delete refuses it too)."""
    if not recording.deletable:
        raise Conflict(NOT_DELETABLE)


async def _delete(request: web.Request) -> Recording:
    user = current_user(request)
    recording = await reachable_recording(request)
    _refuse_while_busy(recording)
    await request.app[keys.RECORDINGS].delete(user, recording)
    return recording


# --- pages -----------------------------------------------------------------------------


@routes.get("/patients/{patient_id}")
async def show_patient(request: web.Request) -> web.Response:
    user = current_user(request)
    patient = await scheduler_of(request).get_patient(path_id(request, "patient_id"))
    recordings = await request.app[keys.RECORDINGS].for_patient(patient.id)
    return render(
        request,
        "patient.html",
        patient=patient,
        recordings=listing(request, user, recordings),
        recording_deleted="recording_deleted" in request.query,
    )


@routes.get(RECORDING)
async def show_recording(request: web.Request) -> web.Response:
    recording = await reachable_recording(request)
    store = request.app[keys.RECORDINGS]
    scheduler = scheduler_of(request)
    files = store.files(recording)
    return render(
        request,
        "recording.html",
        row=RecordingRow.of(store, recording),
        patients=[await scheduler.get_patient(p.id) for p in recording.filed_in],
        progress=percent(recording),
        composed=next((f for f in files if f.name == COMPOSED), None),
        tracks=track_rows(recording, files),
        damaged=damage_rows(store, recording),
        deletable=recording.deletable,
        back=_back(request, recording, request.query.get("back")),
    )


@routes.get(RECORDING + "/status")
async def recording_status(request: web.Request) -> web.Response:
    """What the recording page's script follows while the recording is composed."""
    recording = await reachable_recording(request)
    return web.json_response(
        {"state": recording.state, "progress": percent(recording), "failure": recording.failure}
    )


@routes.get(FILE)
async def recording_file(request: web.Request) -> web.FileResponse:
    return await _file_response(request)


@routes.get(RECORDING + "/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    recording = await reachable_recording(request)
    _refuse_while_busy(recording)
    return render(
        request,
        "recording_delete.html",
        row=RecordingRow.of(request.app[keys.RECORDINGS], recording),
        back=_back(request, recording, request.query.get("back")),
    )


@routes.post(RECORDING + "/delete")
async def delete_from_page(request: web.Request) -> web.Response:
    back = (await request.post()).get("back")
    recording = await _delete(request)
    # Back to the page it was opened from.
    target = _back(request, recording, back if isinstance(back, str) else None)
    raise web.HTTPSeeOther(f"{target}?recording_deleted=1")


# --- the JSON API ----------------------------------------------------------------------


def recording_answer(request: web.Request, recording: Recording) -> models.Recording:
    return models.Recording(
        id=recording.id,
        event=models.RecordedEvent(id=recording.event_id, title=recording.event_title),
        patient_ids=sorted(recording.patient_ids),
        started_at=recording.started_at,
        ended_at=recording.ended_at,
        state=recording.state,
        interrupted=recording.interrupted,
        interruption=recording.interruption,
        failure=recording.failure,
        progress=percent(recording),
        duration_ms=duration_ms(recording),
        size_bytes=size_bytes(request.app[keys.RECORDINGS], recording),
        # Who took part, as the page lists them; whose records hold it: patient_ids.
        present=[models.Attendee.model_validate(a) for a in recording.present],
    )


def file_answer(
    request: web.Request, recording: Recording, file: RecordingFile
) -> models.RecordingFile:
    base = request.app[keys.SETTINGS].public_base_url
    url = f"{base}{PREFIX}/recordings/{recording.id}/files/{file.name}"
    # A file without a kind is the composed one (its track's kind otherwise).
    return models.RecordingFile.model_validate(
        {"name": file.name, "kind": file.kind or "composed", "participant": file.participant}
        | {"size_bytes": file.size_bytes, "url": url}
    )


@API.route(
    "GET",
    "/patients/{patient_id}/recordings",
    "The recordings in a patient's record that this staff member may reach (as the"
    " event's staff, or an administrator), newest first.",
    Answer(200, "The recordings, and how many others there are.", models.PatientRecordings),
    errors={404: "No patient has this id."},
)
async def list_patient_recordings(request: web.Request) -> models.PatientRecordings:
    user = current_user(request)
    patient = await scheduler_of(request).get_patient(path_id(request, "patient_id"))
    recordings = await request.app[keys.RECORDINGS].for_patient(patient.id)
    reachable, hidden = split_reachable(user, recordings)
    return models.PatientRecordings(
        recordings=[recording_answer(request, r) for r in reachable], not_shown=hidden
    )


@API.route(
    "GET",
    RECORDING,
    "One recording, with its files: the composed one once it is ready, and each"
    " participant's audio and video track.",
    Answer(200, "The recording.", models.RecordingDetail),
    errors=NO_RECORDING,
)
async def get_recording(request: web.Request) -> models.RecordingDetail:
    recording = await reachable_recording(request)
    files = request.app[keys.RECORDINGS].files(recording)
    return models.RecordingDetail(
        **dict(recording_answer(request, recording)),
        files=[file_answer(request, recording, f) for f in files],
    )


@API.route(
    "GET",
    FILE,
    "Download one of a recording's files (the name from its files list), as an"
    " attachment. Range requests are answered with 206 and that part. Audited.",
    Answer(
        200,
        "The file: WebM video, or WebM audio for an audio track.",
        {"type": "string", "format": "binary"},
        media_types=("video/webm", "audio/webm"),
    ),
    errors={404: NO_RECORDING[404] + " Or it has no file of this name."},
)
async def get_recording_file(request: web.Request) -> web.FileResponse:
    return await _file_response(request)


@API.route(
    "DELETE",
    RECORDING,
    "Delete a recording: it leaves every patient record and its files are removed from"
    " the server. Audited.",
    Answer(204, "Deleted."),
    errors=NO_RECORDING
    | {409: "It is still being recorded or composed: try again once it is not."},
)
async def delete_recording(request: web.Request) -> None:
    await _delete(request)
