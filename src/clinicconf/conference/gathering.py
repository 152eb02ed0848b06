"""A conference's people and their pages: who may come in (admission), who is here
(presence), what each page is told (visibility), what is kept across a restart
(persistence), and the media they join (behind the port in media.py). `Conference`
(coordinator.py) builds the host's intents and the conference's course on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from .. import audit, page_messages
from ..db import Database
from ..errors import Refused
from ..moderation import Permission
from ..page_messages import (
    OptionsChanged,
    RecordingFailed,
    ServerMessage,
    Waiting,
    WaitingRoom,
    Welcome,
    You,
)
from ..recording.store import Attendee
from ..schedule import Event
from . import visibility
from .admission import Admission, KeptOut, Knock
from .identity import Closing, Identity, Page, Subscriber
from .media import MediaFactory
from .persistence import (
    ConferenceStates,
    SavedConference,
    SavedPerson,
    Slot,
    StateSaver,
    person_key,
)
from .presence import Participant, Presence, new_participant
from .roster import Roster


@dataclass(frozen=True)
class Options:
    moderator: bool = False
    recording: bool = False
    # For guests on the public link: no new ones at all, or each let in by a host.
    locked: bool = False
    waiting_room: bool = False

    def for_pages(self) -> page_messages.Options:
        """The options as the pages are told them."""
        return page_messages.Options(
            moderator=self.moderator,
            recording=self.recording,
            locked=self.locked,
            waiting_room=self.waiting_room,
        )


class Gathering:
    def __init__(
        self,
        event: Event,
        db: Database,
        grace_seconds: float,
        media: MediaFactory,
        states: ConferenceStates,
        quiet: Callable[[Gathering], None],
    ) -> None:
        self._db = db
        # Told when the last page has gone and nobody is about to come back.
        self._on_quiet = quiet
        self.event = event
        self.options = Options()
        self.started_at: datetime | None = None
        self.ended_by: Literal["host", "time"] | None = None
        # The event's times when it ended: moved to others, it opens again.
        self._ended_slot: Slot | None = None
        # No more grace periods, no more media: over for this server.
        self._shut = False
        self._presence = Presence(grace_seconds)
        self._audience = visibility.Audience(self._presence)
        # What a restarted server takes up again: read before any page joins, written
        # as it changes.
        self._saver = StateSaver(states, event.id, self._current_state, lambda: not self._shut)
        self._admission = Admission(self._saver)
        self._roster = Roster(
            self._presence, lambda: self.options.moderator, self._recording_stopped
        )
        # A conference opened again after it ended gets fresh media (and recording).
        self._new_media = media
        # Its media (the port): an aiortc room in this process.
        self.room = media(self._roster)
        self.invite(event)
        self._restoring = asyncio.create_task(self._restore(), name="conference-restore")

    # --- open pages --------------------------------------------------------------------

    def attach(self, page: Page, address: str | None, person: Identity | None) -> None:
        """A page opens: `person` from a personal link, None on the public link until
        its hello. Raises KeptOut beyond the page's bound."""
        self._admission.attach(page, address, person)

    def identify(self, page: Page, identity: Identity) -> None:
        """A public link's page has said who it is. Raises KeptOut beyond the bounds."""
        self._admission.identify(page, identity)

    def detach(self, page: Page) -> None:
        self._admission.detach(page)
        self._quiet()

    @property
    def unused(self) -> bool:
        """No page is open and nobody is about to come back."""
        return not self._admission.pages and not any(p.active for p in self._presence)

    def _quiet(self) -> None:
        if self.unused:
            # Nobody is left to record: what was recorded is composed now, not at the
            # event's end (whoever comes back with recording on begins a new one).
            self.room.finish_recording_soon(self.event)
            self._on_quiet(self)

    def invite(self, event: Event) -> None:
        """Take the event's current people (and times) as the expected participants."""
        self.event = event
        invited = [Identity("staff", s.name, s.id) for s in event.staff]
        invited += [Identity("patient", p.name, p.id) for p in event.patients]
        for participant in self._presence.invite(invited):
            self.room.remove(participant.public_id)

    async def close_pages(self, why: Closing, last_word: ServerMessage | None) -> None:
        """Tell every joined page `last_word` (if any), then close every open page."""
        if last_word is not None:
            self._audience.send_all(last_word)
        await asyncio.gather(*(page.close(why) for page in self._admission.pages))

    # --- across a restart --------------------------------------------------------------

    async def _restore(self) -> None:
        """Take up what this conference was when the server last ran."""
        saved = await self._saver.load()
        self._admission.take_up(saved.people)
        for participant in self._presence:
            self._take_up_saved(participant)
        if saved.options:
            self.options = Options(**saved.options)
        self.started_at, self.ended_by = saved.started_at, saved.ended_by
        self._ended_slot = saved.ended_slot

    async def _restored(self) -> None:
        """Once what the server last knew is taken up. A restore that failed (the
        database held by another process) is tried again for the next page, rather
        than failing every page for the rest of the event."""
        task = self._restoring
        if task.done() and (task.cancelled() or task.exception() is not None):
            self._restoring = asyncio.create_task(self._restore(), name="conference-restore")
        await asyncio.shield(self._restoring)

    def _take_up_saved(self, participant: Participant) -> None:
        saved = self._saver.people.get(person_key(participant.identity.key))
        if saved is not None:
            participant.public_id = saved.public_id
            participant.permission = Permission(saved.permission)
            participant.shown = saved.shown

    def _current_state(self) -> SavedConference:
        return SavedConference(self.started_at, self.ended_by, self._ended_slot, vars(self.options))

    def _save_person(self, identity_key: str, barred_address: str | None = None) -> None:
        """Write what is known of this person now, soon."""
        key = person_key(identity_key)
        participant = self._presence.get(identity_key)
        saved = self._saver.people.get(key)
        if barred_address is None and saved is not None:
            barred_address = saved.barred_address
        if participant is not None:
            saved = SavedPerson(
                participant.public_id, participant.permission.value, participant.shown
            )
        elif saved is None:
            saved = SavedPerson("", Permission.NONE.value, shown=False)  # never got in
        saved.kept_out = self._admission.barred.get(key)
        saved.let_in = key in self._admission.let_in
        saved.barred_address = barred_address
        self._saver.person_changed(key, saved)

    async def saved(self) -> None:
        """Once what has changed so far is written (persistence.StateSaver.saved)."""
        await self._saver.saved()

    # --- connections -------------------------------------------------------------------

    async def join(self, connection: Subscriber, address: str | None = None) -> None:
        """Add a page and send it its `welcome` snapshot, before anything else; a new
        public guest may first wait for a host to let them in. Raises KeptOut for a
        page that may not join."""
        await self._restored()
        if self.ended_by is not None:
            raise KeptOut(Closing.ENDED)
        identity = connection.identity
        if self._admission.must_wait(
            identity,
            address,
            newcomer=not self._got_in_before(identity.key),
            locked=self.options.locked,
            waiting_room=self.options.waiting_room,
        ):
            await self._knock(self._admission.knock(connection, address))
            return
        await self._enter(connection, address)

    def _got_in_before(self, identity_key: str) -> bool:
        """In the conference now, or at some time before a restart: not a newcomer."""
        saved = self._saver.people.get(person_key(identity_key))
        in_now = self._presence.get(identity_key) is not None
        return in_now or (saved is not None and saved.got_in)

    async def _knock(self, knock: Knock) -> None:
        knock.connection.send(
            WaitingRoom(
                type="waiting_room",
                event=visibility.event_summary(self.event),
                server_time=visibility.now_ms(),
            )
        )
        self._tell_hosts_who_waits()
        await self._audit(knock.connection.identity.actor, "guest_waiting")

    def _tell_hosts_who_waits(self) -> None:
        self._audience.tell_hosts(Waiting(type="waiting", guests=self._admission.waiting_list()))

    async def _enter(self, connection: Subscriber, address: str | None) -> None:
        identity = connection.identity
        participant = self._presence.get(identity.key)
        if participant is None:
            # A guest, or a staff member with a link of their own.
            participant = new_participant(identity, invited=False)
            self._take_up_saved(participant)
            self._presence.add(participant)
        self._save_person(identity.key)  # its id, from now on the same after a restart
        self._admission.entered(identity.key)
        arrived = self._presence.arrive(participant, connection)
        participant.address = address
        connection.send(self._welcome(identity, participant))
        if arrived:
            # The others hear of the arrival; the newcomer learns it from the welcome.
            # The hosts learn first what the newcomer may use (a guest nothing, in
            # moderator mode; whatever was set before a restart), so that their
            # controls never show what the server does not enforce.
            self._audience.moderation(self.options.moderator, skip=participant.connections)
            self._audience.presence_of(participant, skip=participant.connections)
            await self._audit(identity.actor, "joined")

    async def leave(self, connection: Subscriber, *, at_once: bool = False) -> None:
        """A page has gone; `at_once` when its holder said they were leaving, so
        there is no grace period to wait for."""
        knock = self._admission.knock_of(connection)
        if knock is not None:
            self._admission.take(knock)
            self._tell_hosts_who_waits()
            return
        page = self._roster.page_gone(connection)
        participant = self._presence.get(connection.identity.key)
        if participant is None or connection not in participant.connections:
            return
        if page is not None:
            await self.room.leave(participant.public_id, page)
        participant.connections.discard(connection)
        if participant.connections:
            return
        barred = self._admission.is_barred(participant.identity.key)
        if self._presence.grace_seconds > 0 and not (self._shut or at_once or barred):
            self._presence.wait_for_return(participant, self._gone)
        else:
            await self._gone(participant)

    async def _gone(self, participant: Participant) -> None:
        self._audience.presence_of(participant)
        self._presence.forget(participant)
        self._admission.left(participant.identity)
        self._admission.forget_guests()
        await self._audit(participant.identity.actor, "left")
        self._quiet()

    @property
    def connections(self) -> list[Subscriber]:
        return self._presence.connections

    def _welcome(self, viewer: Identity, you: Participant) -> Welcome:
        welcome = Welcome(
            type="welcome",
            you=You(id=you.public_id, kind=viewer.kind, name=viewer.name, host=viewer.is_host),
            event=visibility.event_summary(self.event),
            options=self.options.for_pages(),
            started=self.started_at is not None,
            moderation=visibility.moderation_seen_by(
                viewer, self._presence, self.options.moderator
            ),
            server_time=visibility.now_ms(),
            participants=[
                seen
                for p in self._presence
                if (seen := visibility.as_seen_by(viewer, p)) is not None
                and (p.invited or p.active)
            ],
        )
        if viewer.is_host:
            welcome["waiting"] = self._admission.waiting_list()
        return welcome

    # --- media -------------------------------------------------------------------------

    async def join_media(self, connection: Subscriber) -> None:
        if self.started_at is None:
            raise Refused("not_started", "The conference has not started yet.")
        if self._shut:
            raise Refused("ended", "The conference has ended.")
        participant = self._presence.of(connection)
        guest = participant.identity.kind == "guest"
        self.room.changed(self._roster.lineup())  # the media knows of them before they join
        await self.room.join(participant.public_id, self._roster.page_id(connection), guest=guest)
        await self._follow_recording()  # begun again if it was finished while quiet

    async def answer(self, connection: Subscriber, media_connection: str, sdp: str) -> None:
        participant = self._presence.of(connection)
        page = self._roster.page_id(connection)
        await self.room.answer(participant.public_id, page, media_connection, sdp)

    def _moderation_changed(self) -> None:
        self.room.changed(self._roster.lineup())
        self._audience.moderation(self.options.moderator)

    async def _follow_recording(self) -> None:
        """Recording on exactly while the host's option says so and the conference is on."""
        attendees = [
            Attendee(p.public_id, p.identity.name, p.identity.kind, p.identity.person_id)
            for p in self._presence
        ]
        wanted = self.options.recording and not self._shut
        await self.room.follow_recording(self.event, wanted, attendees)

    def _recording_stopped(self, reason: str) -> None:
        """The recording could not go on: the indicator goes off, and the hosts learn
        why (and may start a new one)."""
        self.options = replace(self.options, recording=False)
        self._saver.state_changed()
        self._audience.send_all(OptionsChanged(type="options", options=self.options.for_pages()))
        self._audience.tell_hosts(RecordingFailed(type="recording_failed", message=reason))

    async def _audit(self, actor: audit.Actor, action: str, **detail: Any) -> None:
        """Write one entry of the audit log about this conference's event."""
        await audit.write(self._db, actor, action, event_id=self.event.id, **detail)
