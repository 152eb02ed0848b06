"""One conference's live state and the host's intents: whether it has started or
ended, the host's options, the moderator's choices (who is shown, who may use audio
or video). The pages' connections read it and send intents back through its methods,
which apply the rules (only a host may start, moderate or end), write the audit log
and tell every connection what changed, as that connection's holder may see it. Who
may come in, who is present, what each person sees and what survives a restart are
its modules' (admission, presence, visibility, persistence); its media is behind the
port in media.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

from .. import audit
from ..db import Database, utc_now
from ..errors import PermissionDenied, Refused
from ..moderation import Member, Permission
from ..scheduling import Event
from . import visibility
from .admission import Admission, KeptOut, Knock
from .identity import Closing, Identity, Page, Subscriber
from .media import Attendee, MediaFactory
from .persistence import (
    ConferenceStates,
    SavedConference,
    SavedPerson,
    Slot,
    StateSaver,
    person_key,
)
from .presence import Participant, Presence, new_id, new_participant

CANNOT_RECORD: Final = (
    "This server cannot record: it is set to forward decoded pictures"
    ' (forwarding = "transcode"). Ask its administrator to set forwarding = "packets".'
)


@dataclass(frozen=True)
class Options:
    moderator: bool = False
    recording: bool = False
    # For guests on the public link: no new ones at all, or each let in by a host.
    locked: bool = False
    waiting_room: bool = False


class Conference:
    def __init__(
        self,
        event: Event,
        db: Database,
        grace_seconds: float,
        media: MediaFactory,
        states: ConferenceStates,
        quiet: Callable[[Conference], None] = lambda conference: None,
    ) -> None:
        self._db = db
        # A conference opened again after it ended gets fresh media (and recording).
        self._new_media = media
        # Told when the last page has gone and nobody is about to come back.
        self._on_quiet = quiet
        self.event = event
        self.options = Options()
        self.started_at: datetime | None = None
        self.ended_by: Literal["host", "time"] | None = None
        # The event's times when it ended: moved to others, it opens again.
        self._ended_slot: Slot | None = None
        # Ending and opening again, one at a time: a conference is never opened again
        # while the end is still closing its media.
        self._ending_or_opening = asyncio.Lock()
        # Its media (the port, media.py): an aiortc room in this process.
        self.room = media(self)
        # The conference ends at the event's end, which the clinic may move meanwhile.
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[None] | None = None
        self._shut = False
        self._presence = Presence(grace_seconds)
        # What a restarted server takes up again: read before any page joins, written
        # as it changes.
        self._saver = StateSaver(states, event.id, self._current_state, lambda: not self._shut)
        self._admission = Admission(self._saver)
        # The pages in the media, by the id the media knows them by, both ways.
        self._media_pages: dict[Subscriber, str] = {}
        self._pages_by_id: dict[str, Subscriber] = {}
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
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()
        invited = [Identity("staff", s.name, s.id) for s in event.staff]
        invited += [Identity("patient", p.name, p.id) for p in event.patients]
        for participant in self._presence.invite(invited):
            self.room.remove(participant.public_id)

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
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()
            await self._follow_recording()

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
        newcomer = not self._got_in_before(identity.key)
        if self._admission.must_wait(
            identity,
            address,
            newcomer=newcomer,
            locked=self.options.locked,
            waiting_room=self.options.waiting_room,
        ):
            await self._knock(self._admission.knock(connection, address))
            return
        await self._enter(connection, address)

    def _got_in_before(self, identity_key: str) -> bool:
        """In the conference now, or at some time before a restart: not a newcomer."""
        saved = self._saver.people.get(person_key(identity_key))
        return self._presence.get(identity_key) is not None or (saved is not None and saved.got_in)

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
            self._broadcast_moderation(skip=participant.connections)
            self._broadcast_presence(participant, skip=participant.connections)
            await self._audit(identity.actor, "joined")

    async def leave(self, connection: Subscriber, *, at_once: bool = False) -> None:
        """A page has gone; `at_once` when its holder said they were leaving, so
        there is no grace period to wait for."""
        knock = self._admission.knock_of(connection)
        if knock is not None:
            self._admission.take(knock)
            self._tell_hosts_who_waits()
            return
        page = self._media_pages.pop(connection, None)
        if page is not None:
            del self._pages_by_id[page]
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
        self._broadcast_presence(participant)
        self._presence.forget(participant)
        self._admission.left(participant.identity)
        self._admission.forget_guests()
        await self._audit(participant.identity.actor, "left")
        self._quiet()

    @property
    def connections(self) -> list[Subscriber]:
        return self._presence.connections

    # --- the host's intents ------------------------------------------------------------

    async def set_options(self, identity: Identity, *, moderator: bool, recording: bool) -> None:
        """Before the start, what the conference will start with; during it, moderator
        mode on or off, and the recording paused or resumed."""
        self._require_host(identity)
        options = replace(self.options, moderator=moderator, recording=recording)
        if options == self.options:
            return
        if options.recording and not self.room.can_record:
            raise Refused("cannot_record", CANNOT_RECORD)
        # Each host's change is written to the audit log before it is made: a database
        # held by someone else refuses it (busy) with nothing changed.
        await self._audit(identity.actor, "options_changed", **vars(options))
        self.options = options
        self._saver.state_changed()
        if self.started_at is not None:
            # Paused before anyone's indicator says so.
            await self._follow_recording()
        self._send_all({"type": "options", "options": vars(self.options)})
        if self.started_at is not None:
            self._moderation_changed()

    async def set_access(self, identity: Identity, *, locked: bool, waiting_room: bool) -> None:
        """Who may come in on the public link: nobody new (locked), or each guest let
        in by a host (waiting room). Turning the waiting room off lets in whoever
        waits, unless the conference is locked."""
        self._require_host(identity)
        options = replace(self.options, locked=locked, waiting_room=waiting_room)
        if options == self.options:
            return
        await self._audit(
            identity.actor, "access_changed", locked=locked, waiting_room=waiting_room
        )
        self.options = options
        self._saver.state_changed()
        self._send_all({"type": "options", "options": vars(options)})
        if not waiting_room and not locked:
            # Not those who wait because a removed guest came from their address: a
            # host lets them in one by one, having looked.
            barred_addresses = self._admission.barred_addresses
            knocks = self._admission.knocks_named(None)
            await self._admit(identity, [k for k in knocks if k.address not in barred_addresses])

    async def let_in(self, identity: Identity, knock_id: str | None) -> None:
        """Let in one waiting guest, or (None) everyone waiting."""
        self._require_host(identity)
        await self._admit(identity, self._admission.knocks_named(knock_id))

    async def _admit(self, identity: Identity, knocks: list[Knock]) -> None:
        for knock in knocks:
            if not self._admission.is_waiting(knock):
                continue  # its page closed, or another host decided first
            await self._audit(identity.actor, "guest_let_in", name=knock.connection.identity.name)
            # Taken off the waiting list and in, with no await in between: a page that
            # closes meanwhile is gone from one or the other when it leaves.
            if not self._admission.take(knock):
                continue
            self._admission.let_in.add(person_key(knock.connection.identity.key))
            await self._enter(knock.connection, knock.address)
        self._tell_hosts_who_waits()

    async def turn_away(self, identity: Identity, knock_id: str | None) -> None:
        """Turn away one waiting guest, or (None) everyone waiting: for the rest of
        the event, on that browser."""
        self._require_host(identity)
        turned_away = []
        for knock in self._admission.knocks_named(knock_id):
            if not self._admission.is_waiting(knock):
                continue  # its page closed, or another host decided first
            guest = knock.connection.identity
            await self._audit(identity.actor, "guest_turned_away", name=guest.name)
            if not self._admission.take(knock):
                continue
            self._admission.bar(guest.key, Closing.TURNED_AWAY)
            self._save_person(guest.key)
            turned_away.append(knock)
        self._admission.forget_guests()
        self._tell_hosts_who_waits()
        await asyncio.gather(*(k.connection.close(Closing.TURNED_AWAY) for k in turned_away))

    async def remove(self, identity: Identity, participant_id: str) -> None:
        """Remove someone who is not a host: their pages close, and they cannot come
        back during the event (a guest on that browser; newcomers from their address
        wait to be let in)."""
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        if participant.identity.is_host:
            raise Refused("cannot_remove_host", "A staff member of the event cannot be removed.")
        await self._audit(identity.actor, "participant_removed", participant=participant_id)
        address = participant.address if participant.identity.kind == "guest" else None
        self._admission.bar(participant.identity.key, Closing.REMOVED, address)
        self._save_person(participant.identity.key, barred_address=address)
        self._admission.forget_guests()
        # Their pages close before anything else waits on the database.
        connections = list(participant.connections)
        await asyncio.gather(*(c.close(Closing.REMOVED) for c in connections))
        for connection in connections:
            await self.leave(connection, at_once=True)

    async def _knock(self, knock: Knock) -> None:
        knock.connection.send(
            {
                "type": "waiting_room",
                "event": visibility.event_summary(self.event),
                "server_time": visibility.now_ms(),
            }
        )
        self._tell_hosts_who_waits()
        await self._audit(knock.connection.identity.actor, "guest_waiting")

    def _tell_hosts_who_waits(self) -> None:
        message = {"type": "waiting", "guests": self._admission.waiting_list()}
        for connection in self.connections:
            if connection.identity.is_host:
                connection.send(message)

    async def start(self, identity: Identity) -> None:
        self._require_host(identity)
        if self.started_at is not None:
            raise Refused("already_started", "The conference has started already.")
        await self._audit(identity.actor, "conference_started", **vars(self.options))
        if self.started_at is not None:  # another host, meanwhile
            return
        self.started_at = utc_now()
        self._saver.state_changed()
        self._send_all({"type": "started", "started_at": visibility.epoch_ms(self.started_at)})
        self._broadcast_moderation()
        self._schedule_end()
        await self._follow_recording()

    async def set_shown(self, identity: Identity, participant_id: str, shown: bool) -> None:
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        if participant.shown == shown:
            return
        await self._audit(identity.actor, "shown_changed", participant=participant_id, shown=shown)
        participant.shown = shown
        self._save_person(participant.identity.key)
        self._moderation_changed()

    async def set_permission(self, identity: Identity, participant_id: str, value: str) -> None:
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        try:
            permission = Permission(value)
        except ValueError:
            choices = ", ".join(p.value for p in Permission)
            raise Refused("bad_permission", f"permission: one of {choices}.") from None
        if participant.permission is permission:
            return
        await self._audit(
            identity.actor, "permission_changed", participant=participant_id, permission=value
        )
        participant.permission = permission
        self._save_person(participant.identity.key)
        self._moderation_changed()

    # --- its end, and opening again ----------------------------------------------------

    async def end(self, identity: Identity) -> None:
        """The host ends the conference for everyone."""
        self._require_host(identity)
        await self._audit(identity.actor, "conference_ended", by="host")
        await self._end("host")

    def _schedule_end(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
        remaining = (self.event.end - utc_now()).total_seconds()
        self._end_timer = asyncio.get_running_loop().call_later(
            max(0.0, remaining), self._time_is_up
        )

    def _time_is_up(self) -> None:
        self._end_timer = None
        self._ending = asyncio.create_task(self._end_by_time(), name="conference-end")

    async def _end_by_time(self) -> None:
        await self._audit(audit.SYSTEM, "conference_ended", by="time")
        await self._end("time")

    async def _end(self, by: Literal["host", "time"]) -> None:
        async with self._ending_or_opening:
            if self.ended_by is not None:
                return
            self.ended_by = by
            self._ended_slot = (self.event.start, self.event.end)
            self._saver.state_changed()
            await self.shut()
            await self.close_pages(Closing.ENDED, {"type": "ended", "by": by})

    async def reopen(self, identity: Identity) -> None:
        """A host opens the ended conference again while its event's time lasts (an
        "End Conference for Everyone" pressed by mistake), as it was before its start:
        the pages join it anew, and a host starts it again."""
        self._require_host(identity)
        await self._restored()
        async with self._ending_or_opening:
            if self.ended_by is None:
                raise Refused("not_ended", "The conference has not ended.")
            if self.event.end <= utc_now():
                raise Refused("over", "The event's time is over: reschedule it to meet again.")
            await self._audit(identity.actor, "conference_reopened", by="host")
            self._open_again()

    async def rescheduled(self) -> None:
        """The event has changed: ended in other times than the event has now, and
        those not passed, the conference opens again (the new invitations work)."""
        await self._restored()
        async with self._ending_or_opening:
            if self.ended_by is not None and _moved_ahead(self._ended_slot, self.event):
                await self._audit(audit.SYSTEM, "conference_reopened", by="rescheduled")
                self._open_again()

    def _open_again(self) -> None:
        """As before the start, with the host's options, the moderator's choices and
        who is kept out as they were; the ended one's media and recording are closed."""
        self.started_at = self.ended_by = self._ended_slot = None
        self._shut = False
        self.room = self._new_media(self)
        self._saver.state_changed()

    async def close_pages(self, why: Closing, last_word: dict[str, Any] | None) -> None:
        """Tell every joined page `last_word` (if any), then close every open page."""
        if last_word is not None:
            for connection in self.connections:
                connection.send(last_word)
        await asyncio.gather(*(page.close(why) for page in self._admission.pages))

    async def shut(self) -> None:
        """No more grace periods, no more media: the conference is over for this server."""
        self._shut = True
        if self._end_timer is not None:
            self._end_timer.cancel()
        ending, self._ending = self._ending, None
        if ending is not None and ending is not asyncio.current_task():
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ending
        await self.room.close(self.event)
        # Who was about to come back will not: gone now, and the conference, once
        # nobody is in it, no longer kept.
        for participant in await self._presence.end_graces():
            await self._gone(participant)
        # Whatever was not written yet is, before the server goes.
        with contextlib.suppress(Exception):
            await self._restoring
        await self._saver.finish()

    # --- its media (the roster the media reads) ----------------------------------------

    async def join_media(self, connection: Subscriber) -> None:
        if self.started_at is None:
            raise Refused("not_started", "The conference has not started yet.")
        if self._shut:
            raise Refused("ended", "The conference has ended.")
        participant = self._presence.of(connection)
        guest = participant.identity.kind == "guest"
        await self.room.join(participant.public_id, self._media_page(connection), guest=guest)
        await self._follow_recording()  # begun again if it was finished while quiet

    async def answer(self, connection: Subscriber, media_connection: str, sdp: str) -> None:
        participant = self._presence.of(connection)
        page = self._media_page(connection)
        await self.room.answer(participant.public_id, page, media_connection, sdp)

    def _media_page(self, connection: Subscriber) -> str:
        """The id the media knows this page by (given at its first use)."""
        page = self._media_pages.get(connection)
        if page is None:
            page = self._media_pages[connection] = new_id()
            self._pages_by_id[page] = connection
        return page

    def send(self, page: str, message: dict[str, Any]) -> None:
        connection = self._pages_by_id.get(page)
        if connection is not None:
            connection.send(message)

    @property
    def moderated(self) -> bool:
        return self.options.moderator

    def member(self, participant_id: str) -> Member:
        participant = self._presence.by_public_id(participant_id)
        return Member(
            participant_id,
            host=participant.identity.is_host,
            permission=participant.permission,
            shown=participant.shown,
        )

    def label(self, viewer_id: str, subject_id: str) -> str:
        viewer = self._presence.by_public_id(viewer_id).identity
        return visibility.label(viewer, self._presence.by_public_id(subject_id).identity)

    def _moderation_changed(self) -> None:
        self.room.changed()
        self._broadcast_moderation()

    async def _follow_recording(self) -> None:
        """Recording on exactly while the host's option says so and the conference is on."""
        attendees = [
            Attendee(p.public_id, p.identity.name, p.identity.kind, p.identity.person_id)
            for p in self._presence
        ]
        wanted = self.options.recording and not self._shut
        await self.room.follow_recording(self.event, wanted, attendees)

    def recording_stopped(self, reason: str) -> None:
        """The recording could not go on: the indicator goes off, and the hosts learn
        why (and may start a new one)."""
        self.options = replace(self.options, recording=False)
        self._saver.state_changed()
        self._send_all({"type": "options", "options": vars(self.options)})
        for connection in self.connections:
            if connection.identity.is_host:
                connection.send({"type": "recording_failed", "message": reason})

    # --- telling each page what its holder may see -------------------------------------

    def _welcome(self, viewer: Identity, you: Participant) -> dict[str, Any]:
        waiting = {"waiting": self._admission.waiting_list()} if viewer.is_host else {}
        return {
            **waiting,
            "type": "welcome",
            "you": {
                "id": you.public_id,
                "kind": viewer.kind,
                "name": viewer.name,
                "host": viewer.is_host,
            },
            "event": visibility.event_summary(self.event),
            "options": vars(self.options),
            "started": self.started_at is not None,
            "moderation": self._moderation(viewer),
            "server_time": visibility.now_ms(),
            "participants": [
                seen
                for p in self._presence
                if (seen := visibility.as_seen_by(viewer, p)) is not None
                and (p.invited or p.active)
            ],
        }

    def _moderation(self, viewer: Identity) -> dict[str, Any]:
        return visibility.moderation_seen_by(viewer, self._presence, self.options.moderator)

    def _broadcast_presence(
        self, participant: Participant, skip: Collection[Subscriber] = ()
    ) -> None:
        for connection in self.connections:
            if connection in skip:
                continue
            seen = visibility.as_seen_by(connection.identity, participant)
            if seen is not None:
                connection.send({"type": "presence", "participant": seen})

    def _broadcast_moderation(self, skip: Collection[Subscriber] = ()) -> None:
        for connection in self.connections:
            if connection not in skip:
                connection.send({"type": "moderation", **self._moderation(connection.identity)})

    def _send_all(self, message: dict[str, Any]) -> None:
        for connection in self.connections:
            connection.send(message)

    @staticmethod
    def _require_host(identity: Identity) -> None:
        if not identity.is_host:
            raise PermissionDenied("Only a staff member of the event can do this.")

    async def _audit(self, actor: audit.Actor, action: str, **detail: Any) -> None:
        """Write one entry of the audit log about this conference's event."""
        await audit.write(self._db, actor, action, event_id=self.event.id, **detail)


def _moved_ahead(ended_slot: Slot | None, event: Event) -> bool:
    """The event has times other than those its conference ended in (unknown: ended
    before they were kept), and they have not passed."""
    return ended_slot != (event.start, event.end) and event.end > utc_now()
