"""Recording a conference through the SFU, with real aiortc peers (each camera films
its own shade of grey, each microphone hears its own tone) and the real composer:
the composed file is checked on what it decodes to."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiohttp import web

from clinicconf import audit, keys
from clinicconf.conference.coordinator import CANNOT_RECORD
from clinicconf.recording.files import COMPOSED, track_path

from ...support.lobby import Lobby
from ...support.media_peers import Join, MediaParticipant, enter, introduce
from ...support.recorded_media import (
    Decoded,
    decode,
    halves,
    indicator,
    ready_recording,
    tone_level,
)
from ...support.servers import wait_until


def picture_at(decoded: Decoded, moment: float) -> np.ndarray:
    return min(decoded.pictures, key=lambda p: abs(p[0] - moment))[1]


async def test_a_recorded_conference_is_composed_with_only_what_was_permitted(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50, tone=500)
    patient = await join(lobby.pat_path, 120, tone=800)
    guest = await join(lobby.public_path, 200, tone=1250, display_name="Gail Guest")
    people: list[MediaParticipant] = [host, patient, guest]
    introduce(people)

    # Moderator mode and recording: the host and Pat on screen; Gail, a public
    # guest, may use neither audio nor video (the default) and is never recorded.
    assert (await host.request("set_options", moderator=True, recording=True))["type"] == "result"
    start_sent = time.monotonic()
    assert (await host.request("start"))["type"] == "result"
    began = time.monotonic()
    assert (await host.request("set_shown", participant=patient.id, shown=True))["type"] == "result"
    for participant in people:
        await enter(participant)

    async def both_on_screen() -> bool:
        return await guest.receiving(0.5) >= {(host.id, "video"), (patient.id, "video")}

    await wait_until(both_on_screen)
    await wait_until_since(began, 3.0)

    # Pat's sound is withheld for three seconds: nobody hears it, nor will the recording.
    assert (await host.request("set_permission", participant=patient.id, permission="video"))[
        "type"
    ] == "result"
    withheld_from = time.monotonic() - began
    await wait_until_since(began, withheld_from + 3.0)
    assert (await host.request("set_permission", participant=patient.id, permission="audio_video"))[
        "type"
    ] == "result"
    withheld_to = time.monotonic() - began
    await wait_until_since(began, withheld_to + 3.0)

    # The host pauses the recording for two seconds: everyone's indicator goes off.
    pause_sent = time.monotonic()
    assert (await host.request("set_options", moderator=True, recording=False))["type"] == "result"
    paused = time.monotonic()
    await indicator(patient, on=False)
    await wait_until_since(paused, 2.0)
    resume_sent = time.monotonic()
    assert (await host.request("set_options", moderator=True, recording=True))["type"] == "result"
    resumed = time.monotonic()
    await indicator(patient, on=True)
    await wait_until_since(resumed, 1.5)
    end_sent = time.monotonic()
    await host.send("end")
    assert (await patient.expect("ended"))["by"] == "host"
    ended = time.monotonic()

    recording = await ready_recording(app, lobby.event_id)
    store = app[keys.RECORDINGS]
    # Pat's record has it, Quinn's not: Quinn is linked but never came in.
    assert [patient.name for patient in recording.filed_in] == ["Pat Patel"]
    assert {a.name for a in recording.present} == {"Ada Admin", "Pat Patel", "Gail Guest"}
    tracks = {(f.participant, f.kind) for f in store.files(recording) if f.participant}
    assert tracks == {(host.id, k) for k in ("audio", "video")} | {
        (patient.id, k) for k in ("audio", "video")
    }

    # The server acted on each request between its sending and its answer: the
    # conference's time, less the pause, lies between these two.
    decoded = decode(store.directory(recording.id) / COMPOSED)
    shortest = (end_sent - began) - (resumed - pause_sent)
    longest = (ended - start_sent) - (resume_sent - paused)
    assert shortest - 0.5 < decoded.duration < longest + 0.5, (shortest, longest)
    assert recording.duration_ms is not None
    assert abs(recording.duration_ms / 1000 - decoded.duration) < 0.5

    # Both on screen side by side (in either order); Gail's picture never.
    left, right = halves(picture_at(decoded, withheld_from - 0.5))
    assert sorted([round(left / 20), round(right / 20)]) == sorted([50 // 20, 120 // 20]), (
        left,
        right,
    )
    assert all(abs(p.mean() - 200) > 40 for _, p in decoded.pictures)

    # The host is heard throughout; Gail never; Pat except while withheld.
    sound = decoded.sound
    heard = 0.01
    before = (1.0, withheld_from - 0.3)
    during = (withheld_from + 0.6, withheld_to - 0.6)
    after = (withheld_to + 0.8, withheld_to + 2.5)
    for span in (before, during, after):
        assert tone_level(sound, *span, 500) > heard, span
        assert tone_level(sound, *span, 1250) < heard / 20, span
    assert tone_level(sound, *before, 800) > heard
    assert tone_level(sound, *during, 800) < heard / 20
    assert tone_level(sound, *after, 800) > heard

    actions = [
        e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=lobby.event_id)
    ]
    assert "recording_started" in actions


async def wait_until_since(origin: float, seconds: float) -> None:
    """Let the conference run until `seconds` after `origin` (monotonic)."""
    await asyncio.sleep(max(0.0, origin + seconds - time.monotonic()))


@pytest.mark.parametrize("forwarding", ["transcode"])
async def test_a_server_forwarding_decoded_pictures_says_it_cannot_record(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    # The host is told why, and no recording is made that could hold nothing.
    refused = await host.request("set_options", moderator=False, recording=True)
    assert (refused["code"], refused["message"]) == ("cannot_record", CANNOT_RECORD)
    assert (await host.request("start"))["type"] == "result"
    assert await app[keys.RECORDINGS].for_event(lobby.event_id) == []


async def test_a_recording_is_composed_once_everyone_has_left(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    introduce([host, patient])
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    for participant in (host, patient):
        await enter(participant)

    async def both_see_each_other() -> bool:
        return (patient.id, "video") in await host.receiving(0.5)

    await wait_until(both_see_each_other)
    # Everyone leaves long before the event's end: no need to wait for it.
    for participant in (host, patient):
        await participant.send("leave")
    recording = await ready_recording(app, lobby.event_id)
    assert not recording.interrupted
    assert {a.name for a in recording.present} == {"Ada Admin", "Pat Patel"}


async def test_hosts_toggling_recording_while_it_starts_leave_one_recording_composed(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    colleague = await join(lobby.colleague_path, 90)
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    # The start, and the colleague turning recording off and on again, all at once.
    answers = await asyncio.gather(
        host.request("start"),
        colleague.request("set_options", moderator=False, recording=False),
        colleague.request("set_options", moderator=False, recording=True),
    )
    assert all(answer["type"] == "result" for answer in answers), answers
    await host.send("end")
    await colleague.expect("ended")
    # One recording, composed: none left being written that no indicator shows.
    recording = await ready_recording(app, lobby.event_id)
    assert recording.state == "ready"


async def test_a_full_disk_stops_the_recording_and_the_conference_goes_on(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120)
    introduce([host, patient])
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    # The host's picture is to be written where every write fails: no space left.
    store = app[keys.RECORDINGS]
    (recording,) = await store.for_event(lobby.event_id)
    full = track_path(store.directory(recording.id), host.id, "video")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.symlink_to("/dev/full")
    for participant in (host, patient):
        await enter(participant)

    # The host is told why; everyone's indicator goes off; the conference goes on.
    assert "No space left on device" in (await host.expect("recording_failed"))["message"]
    await indicator(patient, on=False)

    async def still_in_conference() -> bool:
        return (host.id, "video") in await patient.receiving(0.5)

    await wait_until(still_in_conference)
    # What was written before is kept, marked as stopped early, and composed.
    recording = await ready_recording(app, lobby.event_id)
    assert recording.interrupted
    assert recording.interruption is not None and "No space" in recording.interruption
