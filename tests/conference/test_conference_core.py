"""The conference's rules on their own, fast: admission, presence and its grace
period, what each person sees, persistence across a restart (a real SQLite database
in a temporary folder), with a fake behind the media port (conference/media.py) that
records what the conference asked of its media. No aiortc, no network."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clinicconf import audit
from clinicconf.conference.admission import MAX_PAGES_PER_PERSON, KeptOut
from clinicconf.conference.conferences import Conferences
from clinicconf.conference.coordinator import Conference
from clinicconf.conference.identity import Closing, Identity
from clinicconf.conference.media import ConferenceMedia, Lineup, MediaRoster
from clinicconf.db import Database, to_db_time, utc_now
from clinicconf.recording.store import Attendee
from clinicconf.schedule import Event, EventType, Patient, Staff

ADA = Identity("staff", "Ada Admin", 1)
PAT = Identity("patient", "Pat One", 2)
QUINN = Identity("patient", "Quinn Two", 3)
GAIL = Identity("guest", "Gail Guest", guest_key="g" * 20)


@dataclass
class FakeMedia:
    """The media port, recording what the conference asks of it."""

    roster: MediaRoster
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    can_record: bool = True
    lineup: Lineup = field(default_factory=Lineup)

    async def join(self, participant: str, page: str, *, guest: bool) -> None:
        self.pages[participant] = page
        self.calls.append(("join", participant, guest))

    async def answer(self, participant: str, page: str, connection: str, sdp: str) -> None:
        self.calls.append(("answer", participant, connection, sdp))

    async def leave(self, participant: str, page: str) -> None:
        if self.pages.get(participant) == page:
            del self.pages[participant]
        self.calls.append(("leave", participant))

    def remove(self, participant: str) -> None:
        self.pages.pop(participant, None)
        self.calls.append(("remove", participant))

    def changed(self, lineup: Lineup) -> None:
        self.lineup = lineup
        self.calls.append(("changed",))

    async def follow_recording(
        self, event: Event, wanted: bool, attendees: Iterable[Attendee]
    ) -> None:
        names = sorted(a.name for a in attendees if a.participant in self.pages)
        self.calls.append(("follow_recording", wanted, names))

    def finish_recording_soon(self, event: Event) -> None:
        self.calls.append(("finish_recording_soon",))

    async def close(self, event: Event) -> None:
        self.calls.append(("close",))


@dataclass(eq=False)
class FakePage:
    """A joined page: what it was sent, and why it was closed."""

    identity: Identity
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: Closing | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def close(self, why: Closing) -> None:
        self.closed = why

    def last(self, message_type: str) -> dict[str, Any]:
        return next(m for m in reversed(self.sent) if m["type"] == message_type)


def _event() -> Event:
    start = utc_now() - timedelta(minutes=5)
    return Event(
        1,
        "Group session",
        EventType(1, "Group", "#3a7bd5", video_conferencing=True, public_conference=True),
        start,
        start + timedelta(hours=1),
        "scheduled",
        None,
        0,
        staff=[Staff(ADA.person_id or 0, ADA.name, "ada@example.org", None, is_admin=True)],
        patients=[
            Patient(PAT.person_id or 0, PAT.name, None, None, "R-2"),
            Patient(QUINN.person_id or 0, QUINN.name, None, None, "R-3"),
        ],
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "data" / "clinicconf.sqlite3")
    await db.migrate()
    event, now = _event(), to_db_time(utc_now())
    await db.execute(
        "INSERT INTO event_types (id, name, video_conferencing, public_conference)"
        " VALUES (1, 'Group', 1, 1)"
    )
    await db.execute(
        "INSERT INTO events (id, title, event_type_id, start_at, end_at, created_at,"
        " updated_at) VALUES (1, ?, 1, ?, ?, ?, ?)",
        (event.title, to_db_time(event.start), to_db_time(event.end), now, now),
    )
    yield db
    await db.close()


@dataclass
class Server:
    """One run of the server's conferences over the database, with its fakes."""

    conferences: Conferences
    media: list[FakeMedia]

    async def conference(self) -> Conference:
        conference = self.conferences.open(_event())
        await conference.saved()
        return conference


def _server(db: Database, grace_seconds: float = 0.0) -> Server:
    made: list[FakeMedia] = []

    def new_media(roster: MediaRoster) -> ConferenceMedia:
        made.append(FakeMedia(roster))
        return made[-1]

    return Server(Conferences(db, grace_seconds, new_media), made)


async def _joined(conference: Conference, identity: Identity) -> FakePage:
    page = FakePage(identity)
    await conference.join(page, "192.0.2.1")
    return page


async def test_a_guest_is_kept_out_of_a_locked_conference(db: Database) -> None:
    conference = await _server(db).conference()
    await conference.set_access(ADA, locked=True, waiting_room=False)
    with pytest.raises(KeptOut) as kept_out:
        await _joined(conference, GAIL)
    assert kept_out.value.why is Closing.LOCKED


async def test_a_waiting_guest_comes_in_when_a_host_lets_them_in(db: Database) -> None:
    conference = await _server(db).conference()
    host = await _joined(conference, ADA)
    await conference.set_access(ADA, locked=False, waiting_room=True)
    guest = await _joined(conference, GAIL)
    assert [m["type"] for m in guest.sent] == ["waiting_room"]
    waiting = host.last("waiting")["guests"]
    assert [w["name"] for w in waiting] == ["Gail Guest"]
    await conference.let_in(ADA, waiting[0]["id"])
    assert guest.last("welcome")["you"]["name"] == "Gail Guest"
    assert host.last("waiting")["guests"] == []


async def test_a_guest_turned_away_stays_out_on_that_browser(db: Database) -> None:
    conference = await _server(db).conference()
    await _joined(conference, ADA)
    await conference.set_access(ADA, locked=False, waiting_room=True)
    guest = await _joined(conference, GAIL)
    await conference.turn_away(ADA, None)
    assert guest.closed is Closing.TURNED_AWAY
    with pytest.raises(KeptOut) as kept_out:
        await _joined(conference, GAIL)
    assert kept_out.value.why is Closing.TURNED_AWAY


async def test_one_person_opens_at_most_so_many_pages(db: Database) -> None:
    conference = await _server(db).conference()
    pages = [FakePage(PAT) for _ in range(MAX_PAGES_PER_PERSON + 1)]
    for page in pages[:-1]:
        conference.attach(page, "192.0.2.1", PAT)
    with pytest.raises(KeptOut) as kept_out:
        conference.attach(pages[-1], "192.0.2.1", PAT)
    assert kept_out.value.why is Closing.TOO_MANY_PAGES


async def test_a_patient_sees_no_other_patient_and_guests_only_as_guest(db: Database) -> None:
    conference = await _server(db).conference()
    await _joined(conference, GAIL)
    patient = await _joined(conference, PAT)
    seen = {p["kind"]: p for p in patient.last("welcome")["participants"] if p["kind"] != "staff"}
    names = [p["name"] for p in patient.last("welcome")["participants"]]
    assert QUINN.name not in names and PAT.name in names
    assert seen["guest"]["name"] == "Guest" and seen["guest"]["anonymous"] is True


async def test_the_others_see_someone_leave_only_after_the_grace_period(db: Database) -> None:
    conference = await _server(db, grace_seconds=0.2).conference()
    host = await _joined(conference, ADA)
    patient = await _joined(conference, PAT)
    await conference.leave(patient)
    assert host.last("presence")["participant"]["active"] is True  # their arrival only
    await asyncio.sleep(0.4)
    gone = host.last("presence")["participant"]
    assert gone["name"] == PAT.name and gone["active"] is False


async def test_who_says_they_leave_is_gone_at_once(db: Database) -> None:
    conference = await _server(db, grace_seconds=60.0).conference()
    host = await _joined(conference, ADA)
    patient = await _joined(conference, PAT)
    await conference.leave(patient, at_once=True)
    assert host.last("presence")["participant"]["active"] is False
    actions = [row["action"] for row in await audit.entries(db, event_id=1)]
    assert actions.count("joined") == 2 and actions.count("left") == 1


async def test_the_host_options_and_start_survive_a_restart(db: Database) -> None:
    first = _server(db)
    conference = await first.conference()
    await conference.set_options(ADA, moderator=True, recording=False)
    await conference.start(ADA)
    await conference.saved()
    await first.conferences.close()
    again = await _server(db).conference()
    welcome = (await _joined(again, PAT)).last("welcome")
    assert welcome["started"] is True and welcome["options"]["moderator"] is True


async def test_someone_removed_stays_out_after_a_restart(db: Database) -> None:
    first = _server(db)
    conference = await first.conference()
    await _joined(conference, ADA)
    patient = await _joined(conference, PAT)
    await conference.remove(ADA, patient.last("welcome")["you"]["id"])
    assert patient.closed is Closing.REMOVED
    await conference.saved()
    await first.conferences.close()
    again = await _server(db).conference()
    with pytest.raises(KeptOut) as kept_out:
        await _joined(again, PAT)
    assert kept_out.value.why is Closing.REMOVED


async def test_media_is_joined_by_participant_id_only_once_started(db: Database) -> None:
    server = _server(db)
    conference = await server.conference()
    guest = await _joined(conference, GAIL)
    with pytest.raises(Exception, match="not started"):
        await conference.join_media(guest)
    await conference.start(ADA)
    await conference.join_media(guest)
    you = guest.last("welcome")["you"]["id"]
    assert ("join", you, True) in server.media[0].calls


async def test_the_media_is_told_the_moderators_choices_and_the_names_it_may_show(
    db: Database,
) -> None:
    server = _server(db)
    conference = await server.conference()
    host = await _joined(conference, ADA)
    patient = await _joined(conference, PAT)
    guest = await _joined(conference, GAIL)
    await conference.start(ADA)
    gail = guest.last("welcome")["you"]["id"]
    pat = patient.last("welcome")["you"]["id"]
    await conference.set_permission(ADA, gail, "audio")
    media = server.media[0]
    assert media.calls[-1] == ("changed",)
    assert media.lineup.members[gail].permission.value == "audio"
    assert media.lineup.label(pat, gail) == "Guest"
    assert media.lineup.label(gail, pat) == "Patient"
    await conference.join_media(guest)
    media.roster.send(media.pages[gail], {"type": "tracks", "tracks": []})
    assert guest.sent[-1] == {"type": "tracks", "tracks": []}
    assert host.sent[-1]["type"] != "tracks"


async def test_recording_follows_the_option_and_a_failure_turns_it_off(db: Database) -> None:
    server = _server(db)
    conference = await server.conference()
    host = await _joined(conference, ADA)
    await conference.start(ADA)
    await conference.join_media(host)
    await conference.set_options(ADA, moderator=False, recording=True)
    media = server.media[0]
    assert media.calls[-2] == ("follow_recording", True, ["Ada Admin"])
    media.roster.recording_stopped("The disk is full.")
    assert conference.options.recording is False
    assert host.last("recording_failed")["message"] == "The disk is full."


async def test_a_host_who_ends_it_closes_every_page_and_the_media(db: Database) -> None:
    server = _server(db)
    conference = await server.conference()
    page = FakePage(PAT)
    conference.attach(page, "192.0.2.1", PAT)
    await conference.join(page, "192.0.2.1")
    await conference.start(ADA)
    await conference.end(ADA)
    assert page.closed is Closing.ENDED and page.last("ended")["by"] == "host"
    assert ("close",) in server.media[0].calls
    with pytest.raises(KeptOut):
        await _joined(conference, QUINN)


def test_importing_the_conference_loads_no_media_library() -> None:
    modules = ", ".join(
        f"clinicconf.conference.{name}"
        for name in ("coordinator", "conferences", "admission", "presence", "visibility")
    )
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}}"
            " & {'aiortc', 'av', 'aioice'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
