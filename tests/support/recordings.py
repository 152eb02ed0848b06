"""Recordings in the store without a conference: a clip's encoded packets written as
the recorder writes Sam's and Pat's tracks, then the composed file, as the composer
would leave it."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from clinicconf import keys
from clinicconf.bench import clip
from clinicconf.recording.files import COMPOSED, Kind, track_path
from clinicconf.recording.store import Attendee, Recordings
from clinicconf.recording.track_file import TrackFile

# The recorder names track files by the conference's participant ids.
SAM, PAT = "5a4d0001", "9e7c0002"
FRAME_MS: dict[Kind, int] = {"video": 1000 // clip.FRAMES_PER_SECOND, "audio": 20}
# What the composer reports for the composed file: 12 min 5 s, 48.2 MB.
COMPOSED_MS, COMPOSED_BYTES = 725_000, 48_213_000
# Encoded packets of each kind: VP8 frames (a keyframe first), 20 ms Opus packets.
Media = dict[Kind, list[bytes]]


def store_of(app: web.Application) -> Recordings:
    return app[keys.RECORDINGS]


def write_track(path: Path, kind: Kind, packets: list[bytes]) -> None:
    track = TrackFile(path, kind)
    for number, data in enumerate(packets):
        # The clip's only video keyframe is its first frame; every Opus packet is one.
        track.write(data, number * FRAME_MS[kind], keyframe=kind == "audio" or number == 0)
    track.close()


async def recording_of(app: web.Application, media: Media, event_id: int) -> int:
    """A recording of the event, still being written: Sam's and Pat's video and audio."""
    store = store_of(app)
    event = await app[keys.SCHEDULER].get_event(event_id)
    recording_id = await store.create(event)
    for participant in (SAM, PAT):
        for kind, packets in media.items():
            path = track_path(store.directory(recording_id), participant, kind)
            write_track(path, kind, packets)
    # Pat, when she is the event's patient, is in its media: it is in her record.
    sam = Attendee(participant=SAM, name="Sam Staff", kind="staff", person_id=event.staff[0].id)
    present = [sam] + [
        Attendee(participant=PAT, name="Pat Patient", kind="patient", person_id=patient.id)
        for patient in event.patients[:1]
    ]
    await store.note_present(recording_id, present)
    return recording_id


async def compose(app: web.Application, media: Media, recording_id: int) -> None:
    """What the composer does: the conference ends, one playable file is written."""
    store = store_of(app)
    await store.finished(recording_id)
    write_track(store.directory(recording_id) / COMPOSED, "video", media["video"])
    await store.ready(recording_id, COMPOSED_MS, COMPOSED_BYTES)
