"""The conference's media through the SFU, with real aiortc peers as participants:
who receives whose audio and video, checked on what each peer actually decodes
(every camera films its own shade of grey, so a picture tells whose it is)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from clinicconf import audit, keys
from clinicconf.db import utc_now
from clinicconf.schedule import EventInput

from ...support.lobby import Lobby
from ...support.media_peers import (
    BOTH,
    Join,
    MediaParticipant,
    enter,
    introduce,
    of,
    receive_exactly,
    three_in_conference,
)
from ...support.servers import Client, wait_until


@pytest.mark.parametrize("forwarding", ["packets", "transcode"])
async def test_without_moderator_everyone_receives_everyone(lobby: Lobby, join: Join) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    host, patient, guest = three.everyone
    await receive_exactly(
        {
            host: of((patient, BOTH), (guest, BOTH)),
            patient: of((host, BOTH), (guest, BOTH)),
            guest: of((host, BOTH), (patient, BOTH)),
        }
    )
    for participant in three.everyone:
        assert participant.wrong_pictures == 0
    # Names follow the landing page's rules: a guest sees a patient as "Patient", a
    # patient a guest as "Guest".
    names = {t["participant"]: t["name"] for t in guest.tracks.values()}
    assert names == {host.id: "Ada Admin", patient.id: "Patient"}
    names = {t["participant"]: t["name"] for t in patient.tracks.values()}
    assert names == {host.id: "Ada Admin", guest.id: "Guest"}


@pytest.mark.parametrize("forwarding", ["packets", "transcode"])
async def test_the_moderator_chooses_who_is_shown_and_who_is_heard(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    three = await three_in_conference(lobby, join, moderator=True)
    host, patient, guest = three.everyone
    # At first the staff are shown, and the public guest may use neither audio nor
    # video until the host allows it: the host sees and hears Pat, Pat and Gail the host.
    await receive_exactly(
        {
            host: of((patient, BOTH)),
            patient: of((host, BOTH)),
            guest: of((host, BOTH), (patient, ("audio",))),
        }
    )
    steps: list[tuple[str, dict[str, Any], dict[MediaParticipant, set[tuple[str, str]]]]] = [
        (
            "set_permission",
            {"participant": guest.id, "permission": "audio_video"},
            {
                host: of((patient, BOTH), (guest, BOTH)),
                patient: of((host, BOTH), (guest, ("audio",))),
                guest: of((host, BOTH), (patient, ("audio",))),
            },
        ),
        (
            "set_shown",
            {"participant": guest.id, "shown": True},
            {
                host: of((patient, BOTH), (guest, BOTH)),
                patient: of((host, BOTH), (guest, BOTH)),
                guest: of((host, BOTH), (patient, ("audio",))),
            },
        ),
        (
            # Pat keeps sending audio; nobody receives it.
            "set_permission",
            {"participant": patient.id, "permission": "video"},
            {
                host: of((patient, ("video",)), (guest, BOTH)),
                patient: of((host, BOTH), (guest, BOTH)),
                guest: of((host, BOTH)),
            },
        ),
        (
            "set_shown",
            {"participant": guest.id, "shown": False},
            {
                host: of((patient, ("video",)), (guest, BOTH)),
                patient: of((host, BOTH), (guest, ("audio",))),
                guest: of((host, BOTH)),
            },
        ),
        (
            "set_permission",
            {"participant": patient.id, "permission": "none"},
            {
                host: of((guest, BOTH)),
                patient: of((host, BOTH), (guest, ("audio",))),
                guest: of((host, BOTH)),
            },
        ),
        (
            "set_permission",
            {"participant": host.id, "permission": "audio"},
            {
                host: of((guest, BOTH)),
                patient: of((host, ("audio",)), (guest, ("audio",))),
                guest: of((host, ("audio",))),
            },
        ),
        (
            # Moderator mode off: everyone receives everyone again.
            "set_options",
            {"moderator": False, "recording": False},
            {
                host: of((patient, BOTH), (guest, BOTH)),
                patient: of((host, BOTH), (guest, BOTH)),
                guest: of((host, BOTH), (patient, BOTH)),
            },
        ),
    ]
    for type_, fields, expected in steps:
        assert (await host.request(type_, **fields))["type"] == "result"
        await receive_exactly(expected)
    # The patient was told what the moderator withheld from them, and the log has it all.
    assert patient.moderation["permissions"][patient.id] == "none"
    actions = [
        e["action"] for e in await audit.entries(app[keys.DATABASE], event_id=lobby.event_id)
    ]
    assert actions.count("permission_changed") == 4 and actions.count("shown_changed") == 2


async def test_a_late_joiner_finds_the_moderators_choices(lobby: Lobby, join: Join) -> None:
    three = await three_in_conference(lobby, join, moderator=True)
    host, patient, guest = three.everyone
    await host.request("set_permission", participant=guest.id, permission="audio_video")
    await host.request("set_shown", participant=guest.id, shown=True)
    await host.request("set_permission", participant=patient.id, permission="video")

    # A colleague arriving late finds the choices as they are...
    sam = await join(lobby.colleague_path, 90)
    moderation = sam.welcome["moderation"]
    assert moderation["moderator"] is True
    assert set(moderation["shown"]) == {host.id, sam.id, guest.id}  # the staff, and Gail
    assert moderation["permissions"] == {patient.id: "video"}
    # ...and so does a patient arriving late, who receives accordingly: Pat's video is
    # not shown to them, and Pat's audio goes to nobody.
    quinn = await join(lobby.quinn_path, 160)
    introduce([*three.everyone, sam, quinn])
    await enter(quinn)
    await receive_exactly({quinn: of((host, BOTH), (guest, BOTH))})
    await receive_exactly({host: of((patient, ("video",)), (guest, BOTH), (quinn, BOTH))})


async def test_who_leaves_stops_everywhere_and_who_comes_back_keeps_their_permission(
    lobby: Lobby, join: Join
) -> None:
    three = await three_in_conference(lobby, join, moderator=True)
    host, patient, guest = three.everyone
    await host.request("set_permission", participant=guest.id, permission="audio_video")
    await host.request("set_permission", participant=patient.id, permission="video")
    await receive_exactly({host: of((patient, ("video",)), (guest, BOTH))})

    # The guest leaves: their tracks stop for everyone, and no page lists them.
    await guest.send("leave")
    await receive_exactly({host: of((patient, ("video",))), patient: of((host, BOTH))})
    for participant in (host, patient):
        assert guest.id not in {t["participant"] for t in participant.tracks.values()}

    # Pat's page drops; a new one within the grace period is still Pat, still muted.
    await patient.close()
    again = await join(lobby.pat_path, 120)
    assert again.id == patient.id
    assert again.welcome["moderation"]["permissions"] == {patient.id: "video"}
    introduce([host, again])
    await enter(again)
    await receive_exactly({host: of((again, ("video",))), again: of((host, BOTH))})


async def test_a_second_window_takes_the_media_over(lobby: Lobby, join: Join) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    second = await join(lobby.pat_path, 120)
    introduce([*three.everyone, second])
    await enter(second)
    closed = await three.patient.expect("media_closed")
    assert closed["reason"] == "elsewhere"
    await receive_exactly({second: of((three.host, BOTH), (three.guest, BOTH))})


async def test_the_host_ends_the_conference_for_everyone(
    lobby: Lobby, join: Join, app: web.Application, client: Client
) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    await receive_exactly({three.patient: of((three.host, BOTH), (three.guest, BOTH))})
    refused = await three.patient.request("end")
    assert refused["code"] == "not_host"

    await three.host.send("end")
    for participant in three.everyone:
        assert (await participant.expect("ended"))["by"] == "host"
    await wait_until(lambda: all_closed(three.everyone), within=10.0)
    assert {p.closed_with for p in three.everyone} == {4411}
    conference = app[keys.CONFERENCES].get(lobby.event_id)
    assert conference is not None and not conference.room.present
    # Every relay, applier and timer of the conference has stopped.
    running = {task.get_name() for task in asyncio.all_tasks()}
    assert not {n for n in running if n.startswith(("relay-", "room-", "peer-", "conference-"))}
    # Whoever opens a link now is told that the conference has ended.
    async with client.ws_connect(lobby.pat_path) as ws:
        assert (await ws.receive(timeout=5)).data == 4411


async def test_the_conference_ends_at_the_events_end(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    await receive_exactly({three.patient: of((three.host, BOTH), (three.guest, BOTH))})
    scheduler = app[keys.SCHEDULER]
    event = await scheduler.get_event(lobby.event_id)
    # The clinic shortens the event: the pages reconnect and learn the new end.
    await scheduler.update_event(
        lobby.host,
        event.id,
        EventInput(
            event.title, event.event_type.id, event.start, utc_now() + timedelta(seconds=3),
            [s.id for s in event.staff], [p.id for p in event.patients],
        ),
    )  # fmt: skip
    await wait_until(lambda: all_closed(three.everyone), within=10.0)
    host = await join(lobby.host_path, 50)
    assert (await host.expect("ended"))["by"] == "time"
    await wait_until(lambda: all_closed([host]), within=10.0)
    assert host.closed_with == 4411


async def all_closed(people: list[MediaParticipant]) -> bool:
    return all(p.closed_with is not None for p in people)


async def test_a_page_that_closes_its_own_connection_stalls_nobody(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    await receive_exactly({three.patient: of((three.host, BOTH), (three.guest, BOTH))})
    # Pat's page closes its peer connection (as a page does on a failure).
    assert three.patient.pc is not None
    await three.patient.pc.close()
    closed = await three.patient.expect("media_closed")
    assert closed["reason"] == "failed"
    await receive_exactly({three.host: of((three.guest, BOTH))})
    # Whoever comes next is served as usual.
    quinn = await join(lobby.quinn_path, 160)
    introduce([three.host, three.guest, quinn])
    await enter(quinn)
    await receive_exactly({quinn: of((three.host, BOTH), (three.guest, BOTH))})


async def test_someone_taken_off_the_event_loses_the_media_and_the_others_go_on(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    scheduler = app[keys.SCHEDULER]
    event = await scheduler.get_event(lobby.event_id)
    pat_id = next(p.id for p in event.patients if p.name == "Pat Patel")
    await scheduler.update_event(
        lobby.host,
        event.id,
        EventInput(
            event.title, event.event_type.id, event.start, event.end,
            [s.id for s in event.staff], [p.id for p in event.patients if p.id != pat_id],
        ),
    )  # fmt: skip
    await wait_until(lambda: all_closed(three.everyone), within=10.0)
    conference = app[keys.CONFERENCES].get(lobby.event_id)
    assert conference is not None and three.patient.id not in conference.room.present
    # The host and the guest come back (the pages reconnect) and carry on.
    host = await join(lobby.host_path, 50)
    guest = await join(lobby.public_path, 200, display_name="Gail Guest")
    introduce([host, guest])
    for participant in (host, guest):
        await enter(participant)
    await receive_exactly({host: of((guest, BOTH)), guest: of((host, BOTH))})


async def test_two_windows_joining_at_once_leave_one_connection(
    lobby: Lobby, join: Join, app: web.Application
) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    second = await join(lobby.pat_path, 120)
    introduce([*three.everyone, second])
    for _ in range(3):
        answers = await asyncio.gather(
            three.patient.request("join_media"), second.request("join_media")
        )
        assert {a["type"] for a in answers} == {"result"}
    conference = app[keys.CONFERENCES].get(lobby.event_id)
    assert conference is not None
    assert sorted(conference.room.present) == sorted(p.id for p in three.everyone)
    # Whichever window kept it, Pat is seen: one connection, no leftovers.
    await receive_exactly({three.host: of((three.patient, BOTH), (three.guest, BOTH))})


async def test_every_picture_starts_on_a_keyframe_even_when_shown_again(
    lobby: Lobby, join: Join
) -> None:
    """Forwarded packets are held for a subscriber until a keyframe (its publisher's
    newest, replayed at once, or the next, which the server asks for): a picture
    never starts broken."""
    three = await three_in_conference(lobby, join, moderator=True)
    host, patient, guest = three.everyone
    await host.request("set_permission", participant=guest.id, permission="audio_video")
    await host.request("set_shown", participant=guest.id, shown=True)
    await receive_exactly({patient: of((host, BOTH), (guest, BOTH))})
    await host.request("set_shown", participant=guest.id, shown=False)
    await receive_exactly({patient: of((host, BOTH), (guest, ("audio",)))})
    await host.request("set_shown", participant=guest.id, shown=True)
    await receive_exactly({patient: of((host, BOTH), (guest, BOTH))})

    gail_mid = next(
        mid
        for mid, track in patient.tracks.items()
        if track["participant"] == guest.id and track["kind"] == "video"
    )
    starts = [keyframe for mid, keyframe in patient.starts_after_pauses if mid == gail_mid]
    # Shown, then shown again; on a slow machine the live keyframe may come long enough
    # after the replayed one to count as one more start.
    assert len(starts) >= 2 and all(starts)
    assert all(keyframe for _, keyframe in patient.starts_after_pauses)
    assert patient.wrong_pictures == 0


async def test_packets_lost_on_the_way_to_a_subscriber_are_sent_again(
    lobby: Lobby, join: Join
) -> None:
    host = await join(lobby.host_path, 50)
    patient = await join(lobby.pat_path, 120, lose_every=12)
    assert (await host.request("start"))["type"] == "result"
    introduce([host, patient])
    for participant in (host, patient):
        await enter(participant)
    # One video packet in twelve lost, and still the picture keeps coming, whole:
    # the server answers the patient's NACKs from what it sent (as RTX).
    await receive_exactly({patient: of((host, BOTH))})
    await receive_exactly({patient: of((host, BOTH))})
    assert patient.retransmissions > 0
    assert patient.wrong_pictures == 0
