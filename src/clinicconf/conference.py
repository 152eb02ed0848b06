"""Per-conference live state: who is present, the host's options, whether the
conference has started, and the moderator's choices (who is shown, who may use
audio or video). One `Conference` per event, kept by the `Conferences` registry; the
pages' connections read it and send intents back through its methods, which apply
the rules (only a host may start, moderate or end) and tell every connection what
changed, as that connection's holder may see it. Its media is its `Room`'s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from . import audit
from .conference_state import ConferenceStates, SavedPerson, Slot, person_key
from .db import Database, utc_now
from .errors import PermissionDenied, Refused
from .moderation import Member, Permission
from .recording.jobs import Composer
from .recording.lifecycle import ConferenceRecording
from .recording.store import Attendee
from .schedule import Event
from .sfu.room import RoomFactory

log = logging.getLogger(__name__)

ParticipantKind = Literal["staff", "patient", "guest"]
# Who is shown to whom by kind alone, (viewer, subject): a patient to a public guest,
# and a guest to a patient.
_STAND_INS: Final[dict[tuple[ParticipantKind, ParticipantKind], str]] = {
    ("guest", "patient"): "Patient",
    ("patient", "guest"): "Guest",
}


class Closing(StrEnum):
    """Why the conference closes a page, or keeps it out. The web edge says it to
    the page in its own terms (a close code, web/protocol.py)."""

    # The event was changed (the page reconnects and sees the new state; a person
    # taken off the event cannot), or cancelled; the conference has ended.
    EVENT_CHANGED = "event_changed"
    CANCELLED = "cancelled"
    ENDED = "ended"
    # No room for another guest (or another page before hello), whoever they are; in
    # the waiting room; too many pages of this person, or from this address.
    FULL = "full"
    WAITING_ROOM_FULL = "waiting_room_full"
    TOO_MANY_PAGES = "too_many_pages"
    # A public guest kept out: the conference is locked, the host turned them away, or
    # removed them (or, for a linked person, removed them: their link is closed to them).
    LOCKED = "locked"
    TURNED_AWAY = "turned_away"
    REMOVED = "removed"
    SHUTTING_DOWN = "shutting_down"


# Someone a patient may not see by name, in the names of the videos they receive.
UNNAMED: Final = "Participant"
# Who may hold the conference's pages: the people linked to the event always get in,
# and no holder of a link (the public one, or one person's) can take their places.
# Public link pages that have not said hello, from one address (a few tabs opening at
# once) and in all (from many addresses): each is closed after HELLO_TIMEOUT_SECONDS.
MAX_UNIDENTIFIED_PER_ADDRESS: Final = 8
MAX_UNIDENTIFIED: Final = 100
# One person's pages (their link, or a guest's browser): tabs, a phone and a laptop,
# a reload overlapping the page it replaces.
MAX_PAGES_PER_PERSON: Final = 8
# Guests' pages, in the conference or waiting, from one address (a family, a clinic's
# waiting room behind one router) and in all: far more than a group session has, and
# above the 300 guests in one lobby that bench/lobby.py holds (docs/benchmarks.md).
MAX_GUEST_PAGES_PER_ADDRESS: Final = 20
MAX_GUEST_PAGES: Final = 400
# Guests waiting to be let in: a list a host can still read through.
MAX_WAITING: Final = 50
# What is kept of public guests who are not in: one who left (and was not removed or
# turned away) is forgotten after this long, or sooner beyond the most recent
# MAX_LEFT_GUESTS: they come back as a newcomer (a waiting room, a lock apply to
# them again). Those removed or turned away are kept, the most recent MAX_BARRED_GUESTS.
FORGET_GUESTS_AFTER_SECONDS: Final = 30 * 60.0
MAX_LEFT_GUESTS: Final = 200
MAX_BARRED_GUESTS: Final = 500
# A write of the conference's state that failed (the database held by another
# process) is tried again after this long, until it is written.
SAVE_RETRY_SECONDS: Final = 2.0
CANNOT_RECORD: Final = (
    "This server cannot record: it is set to forward decoded pictures"
    ' (forwarding = "transcode"). Ask its administrator to set forwarding = "packets".'
)


@dataclass(frozen=True)
class Identity:
    """Who a connection speaks for: one linked person, or one guest's browser."""

    kind: ParticipantKind
    name: str
    person_id: int | None = None
    # A guest's own random key: their tabs and reconnects are one presence.
    guest_key: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.person_id if self.person_id is not None else self.guest_key}"

    @property
    def is_host(self) -> bool:
        """Any staff member holding a link of the event may run it."""
        return self.kind == "staff"

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.kind, self.person_id)


class Page(Protocol):
    """An open page's socket, from its opening, before it has said who it is."""

    async def close(self, why: Closing) -> None: ...


class Subscriber(Protocol):
    """A page's connection once it has joined, as the conference sees it."""

    identity: Identity

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; never blocks (a connection that cannot keep up closes)."""

    async def close(self, why: Closing) -> None: ...


@dataclass
class Participant:
    public_id: str
    identity: Identity
    # Linked to the event: listed (as inactive) even when not there.
    invited: bool
    connections: set[Subscriber] = field(default_factory=set)
    # Counting down to "inactive" after the last connection closed.
    grace: asyncio.Task[None] | None = None
    # The moderator's choices: kept as long as the conference knows the person.
    permission: Permission = Permission.AUDIO_VIDEO
    shown: bool = False
    # Where their page connects from (a removed guest's address sends newcomers from
    # it to the waiting room).
    address: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.connections) or self.grace is not None


@dataclass(frozen=True)
class Options:
    moderator: bool = False
    recording: bool = False
    # For guests on the public link: no new ones at all, or each let in by a host.
    locked: bool = False
    waiting_room: bool = False


class KeptOut(Exception):
    """This page may not join, for `why` (the page says so)."""

    def __init__(self, why: Closing) -> None:
        super().__init__(why.value)
        self.why = why


@dataclass(frozen=True)
class _Claim:
    """Whom an open page is for, as far as is known yet."""

    address: str | None
    # None: a public link's page that has not said hello.
    identity_key: str | None = None
    guest: bool = False


@dataclass(eq=False)
class Knock:
    """A public guest's page waiting for a host to let them in."""

    id: str
    connection: Subscriber
    address: str | None


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    """The server's clock, which every page's "Time Left" follows."""
    return time.time_ns() // 1_000_000


def _participant(identity: Identity, invited: bool) -> Participant:
    """In moderator mode the staff are on screen until the host says otherwise, and a
    public guest uses neither audio nor video until the host allows it: someone the
    host silenced cannot come back unsilenced under another name or browser."""
    permission = Permission.NONE if identity.kind == "guest" else Permission.AUDIO_VIDEO
    return Participant(_new_id(), identity, invited, shown=identity.is_host, permission=permission)


class Conference:
    def __init__(
        self,
        event: Event,
        db: Database,
        grace_seconds: float,
        rooms: RoomFactory,
        composer: Composer,
        states: ConferenceStates,
        quiet: Callable[[Conference], None] = lambda conference: None,
    ) -> None:
        self._db = db
        self._states = states
        self._grace_seconds = grace_seconds
        # A conference opened again after it ended gets a fresh room and recording.
        self._rooms = rooms
        self._composer = composer
        # Told when the last page has gone and nobody is about to come back.
        self._on_quiet = quiet
        self.event = event
        self.options = Options()
        self.started_at: datetime | None = None
        self.ended_by: Literal["host", "time"] | None = None
        # The event's times when it ended: moved to others, it opens again.
        self._ended_slot: Slot | None = None
        # Ending and opening again, one at a time: a conference is never opened again
        # while the end is still closing its room.
        self._ending_or_opening = asyncio.Lock()
        self.room = rooms(self)
        # The conference ends at the event's end, which the clinic may move meanwhile.
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[None] | None = None
        self._participants: dict[str, Participant] = {}
        # Every open page, joined or not yet: each is closed with the conference.
        self._pages: dict[Page, _Claim] = {}
        self._shut = False
        self._recording = ConferenceRecording(composer, self.room, self._recording_stopped)
        # Keeping people out, for the conference's life: guests waiting to be let in,
        # those let in once (they come back without waiting), and those removed or
        # turned away, with the code their page is closed with; by stored person key.
        self._knocks: dict[str, Knock] = {}
        self._let_in: set[str] = set()
        self._barred: dict[str, Closing] = {}
        self._barred_addresses: set[str] = set()
        # Guests who left (stored person key -> when), the longest gone first.
        self._left_guests: OrderedDict[str, float] = OrderedDict()
        # What a restarted server takes up again (conference_state.py): read before
        # any page joins, written as it changes, in order, by one task at a time.
        self._saved_people: dict[str, SavedPerson] = {}
        self._unsaved_state = False
        self._unsaved_people: set[str] = set()
        self._saver: asyncio.Task[None] | None = None
        self._save_failing = False
        self.invite(event)
        self._restoring = asyncio.create_task(self._restore(), name="conference-restore")

    # --- open pages --------------------------------------------------------------------

    def attach(self, page: Page, address: str | None, person: Identity | None) -> None:
        """A page opens: `person` from a personal link, None on the public link until
        its hello. Raises KeptOut beyond the page's bound."""
        if person is not None:
            self._check_pages_of(person)
            self._pages[page] = _Claim(address, person.key)
            return
        unidentified = [c for c in self._pages.values() if c.identity_key is None]
        if sum(c.address == address for c in unidentified) >= MAX_UNIDENTIFIED_PER_ADDRESS:
            raise KeptOut(Closing.TOO_MANY_PAGES)
        if len(unidentified) >= MAX_UNIDENTIFIED:
            raise KeptOut(Closing.FULL)
        self._pages[page] = _Claim(address)

    def identify(self, page: Page, identity: Identity) -> None:
        """A public link's page has said who it is: a guest, within the guests' bounds.
        Raises KeptOut beyond them."""
        claim = self._pages.get(page)
        if claim is None or claim.identity_key is not None:
            return  # a personal link's, counted as its person's from the start
        self._check_pages_of(identity)
        guests = [c for c in self._pages.values() if c.guest]
        if sum(c.address == claim.address for c in guests) >= MAX_GUEST_PAGES_PER_ADDRESS:
            raise KeptOut(Closing.TOO_MANY_PAGES)
        if len(guests) >= MAX_GUEST_PAGES:
            raise KeptOut(Closing.FULL)
        self._pages[page] = replace(claim, identity_key=identity.key, guest=True)

    def _check_pages_of(self, identity: Identity) -> None:
        pages = sum(c.identity_key == identity.key for c in self._pages.values())
        if pages >= MAX_PAGES_PER_PERSON:
            raise KeptOut(Closing.TOO_MANY_PAGES)

    def detach(self, page: Page) -> None:
        self._pages.pop(page, None)
        self._quiet()

    @property
    def unused(self) -> bool:
        """No page is open and nobody is about to come back."""
        return not self._pages and not any(p.active for p in self._participants.values())

    def _quiet(self) -> None:
        if self.unused:
            # Nobody is left to record: what was recorded is composed now, not at the
            # event's end (whoever comes back with recording on begins a new one).
            if self._recording.active:
                self._recording.finish_soon(self.event)
            self._on_quiet(self)

    # --- who is expected ---------------------------------------------------------------

    def invite(self, event: Event) -> None:
        """Take the event's current people (and times) as the expected participants."""
        self.event = event
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()
        invited = [Identity("staff", s.name, s.id) for s in event.staff]
        invited += [Identity("patient", p.name, p.id) for p in event.patients]
        for identity in invited:
            participant = self._participants.get(identity.key)
            if participant is None:
                self._participants[identity.key] = _participant(identity, invited=True)
            else:
                participant.invited = True
        # Someone taken off the event is gone at once: their link no longer works.
        keys = {identity.key for identity in invited}
        for key, participant in list(self._participants.items()):
            if participant.invited and key not in keys:
                _cancel(participant.grace)
                del self._participants[key]
                self.room.remove(participant.public_id)

    # --- across a restart --------------------------------------------------------------

    async def _restore(self) -> None:
        """Take up what this conference was when the server last ran."""
        saved = await self._states.load(self.event.id)
        self._saved_people = saved.people
        for key, person in saved.people.items():
            if person.kept_out is not None:
                self._barred[key] = Closing(person.kept_out)
            if person.barred_address is not None:
                self._barred_addresses.add(person.barred_address)
            if person.let_in:
                self._let_in.add(key)
            if key.startswith("guest:") and person.kept_out is None:
                self._left_guests[key] = time.monotonic()  # forgotten as if they left now
        for participant in self._participants.values():
            self._take_up_saved(participant)
        if saved.options:
            self.options = Options(**saved.options)
        self.started_at, self.ended_by = saved.started_at, saved.ended_by
        self._ended_slot = saved.ended_slot
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()
            await self._follow_recording()

    def _take_up_saved(self, participant: Participant) -> None:
        saved = self._saved_people.get(person_key(participant.identity.key))
        if saved is not None:
            participant.public_id = saved.public_id
            participant.permission = Permission(saved.permission)
            participant.shown = saved.shown

    def _save_state(self) -> None:
        """Write the conference's own state (started, ended, options), soon."""
        self._unsaved_state = True
        self._save_soon()

    def _save_person(self, identity_key: str, barred_address: str | None = None) -> None:
        """Write what is known of this person now, soon."""
        key = person_key(identity_key)
        participant = self._participants.get(identity_key)
        saved = self._saved_people.get(key)
        if barred_address is None and saved is not None:
            barred_address = saved.barred_address
        if participant is not None:
            saved = SavedPerson(
                participant.public_id, participant.permission.value, participant.shown
            )
        elif saved is None:
            saved = SavedPerson("", Permission.NONE.value, shown=False)  # never got in
        saved.kept_out, saved.let_in = self._barred.get(key), key in self._let_in
        saved.barred_address = barred_address
        self._saved_people[key] = saved
        self._unsaved_people.add(key)
        self._save_soon()

    def _forget_guests(self) -> None:
        """What FORGET_GUESTS_AFTER_SECONDS, MAX_LEFT_GUESTS and MAX_BARRED_GUESTS say."""
        long_ago = time.monotonic() - FORGET_GUESTS_AFTER_SECONDS
        left = self._left_guests
        while left and (len(left) > MAX_LEFT_GUESTS or next(iter(left.values())) <= long_ago):
            key, _ = left.popitem(last=False)
            self._forget_person(key)
        barred = [key for key in self._barred if key.startswith("guest:")]
        oldest = barred[: max(0, len(barred) - MAX_BARRED_GUESTS)]
        for key in oldest:
            del self._barred[key]
            self._forget_person(key)
        if oldest:  # the addresses still kept out: those of the barred kept
            self._barred_addresses = {
                p.barred_address for p in self._saved_people.values() if p.barred_address
            }

    def _forget_person(self, key: str) -> None:
        """A stored person the conference no longer keeps: gone from the database soon."""
        self._saved_people.pop(key, None)
        self._let_in.discard(key)
        self._unsaved_people.add(key)
        self._save_soon()

    def _save_soon(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save(), name="conference-save")

    async def _save(self) -> None:
        try:
            while self._unsaved_state or self._unsaved_people:
                await self._save_what_changed()
        except Exception:
            # The conference goes on meanwhile; a removal or a lock not written would be
            # forgotten at a restart, so it is tried again, in the background, until it is.
            if not self._save_failing:
                log.exception("the conference's state could not be saved; trying again")
            self._save_failing = True
            asyncio.get_running_loop().call_later(SAVE_RETRY_SECONDS, self._save_again)
        else:
            self._save_failing = False

    def _save_again(self) -> None:
        if not self._shut:
            self._save_soon()

    async def saved(self) -> None:
        """Once what has changed so far is written, or could not be this time (then it
        is tried again): a request is answered after this, so that a change it made
        survives a crash right after."""
        if self._saver is not None:
            await asyncio.shield(self._saver)

    async def _save_what_changed(self) -> None:
        """What is marked unsaved, each mark taken off only once it is written."""
        if self._unsaved_state:
            self._unsaved_state = False
            try:
                await self._states.save_conference(
                    self.event.id,
                    self.started_at,
                    self.ended_by,
                    self._ended_slot,
                    vars(self.options),
                )
            except BaseException:
                self._unsaved_state = True
                raise
        while self._unsaved_people:
            key = next(iter(self._unsaved_people))
            self._unsaved_people.discard(key)
            person = self._saved_people.get(key)
            try:
                if person is None:
                    await self._states.forget_person(self.event.id, key)
                else:
                    await self._states.save_person(self.event.id, key, person)
            except BaseException:
                self._unsaved_people.add(key)
                raise

    async def _restored(self) -> None:
        """Once what the server last knew is taken up. A restore that failed (the
        database held by another process) is tried again for the next page, rather
        than failing every page for the rest of the event."""
        task = self._restoring
        if task.done() and (task.cancelled() or task.exception() is not None):
            self._restoring = asyncio.create_task(self._restore(), name="conference-restore")
        await asyncio.shield(self._restoring)

    # --- connections -------------------------------------------------------------------

    async def join(self, connection: Subscriber, address: str | None = None) -> None:
        """Add a page and send it its `welcome` snapshot, before anything else; a new
        public guest may first wait for a host to let them in. Raises KeptOut for a
        page that may not join."""
        await self._restored()
        if self.ended_by is not None:
            raise KeptOut(Closing.ENDED)
        identity = connection.identity
        barred = self._barred.get(person_key(identity.key))
        if barred is not None:
            raise KeptOut(barred)
        if identity.kind == "guest" and not self._got_in_before(identity.key):
            if self.options.locked:
                raise KeptOut(Closing.LOCKED)
            must_wait = self.options.waiting_room or address in self._barred_addresses
            if must_wait and person_key(identity.key) not in self._let_in:
                if len(self._knocks) >= MAX_WAITING:
                    raise KeptOut(Closing.WAITING_ROOM_FULL)
                await self._knock(Knock(_new_id(), connection, address))
                return
        await self._enter(connection, address)

    def _got_in_before(self, identity_key: str) -> bool:
        """In the conference now, or at some time before a restart: not a newcomer."""
        saved = self._saved_people.get(person_key(identity_key))
        return identity_key in self._participants or (saved is not None and saved.got_in)

    async def _enter(self, connection: Subscriber, address: str | None) -> None:
        identity = connection.identity
        participant = self._participants.get(identity.key)
        if participant is None:
            # A guest, or a staff member with a link of their own.
            participant = _participant(identity, invited=False)
            self._take_up_saved(participant)
            self._participants[identity.key] = participant
        self._save_person(identity.key)  # its id, from now on the same after a restart
        self._left_guests.pop(person_key(identity.key), None)
        was_active = participant.active
        _cancel(participant.grace)
        participant.grace = None
        participant.connections.add(connection)
        participant.address = address
        connection.send(self._welcome(identity, participant))
        if not was_active:
            # The others hear of the arrival; the newcomer learns it from the welcome.
            # The hosts learn first what the newcomer may use (a guest nothing, in
            # moderator mode; whatever was set before a restart), so that their
            # controls never show what the server does not enforce.
            self._broadcast_moderation(skip=participant.connections)
            self._broadcast_presence(participant, skip=participant.connections)
            await self._record(identity.actor, "joined")

    async def leave(self, connection: Subscriber, *, at_once: bool = False) -> None:
        """A page has gone; `at_once` when its holder said they were leaving, so
        there is no grace period to wait for."""
        knock = self._knock_of(connection)
        if knock is not None:
            del self._knocks[knock.id]
            self._tell_hosts_who_waits()
            return
        participant = self._participants.get(connection.identity.key)
        if participant is None or connection not in participant.connections:
            return
        await self.room.leave(participant.public_id, connection)
        participant.connections.discard(connection)
        if participant.connections:
            return
        barred = person_key(participant.identity.key) in self._barred
        if self._grace_seconds > 0 and not (self._shut or at_once or barred):
            participant.grace = asyncio.create_task(
                self._expire(participant), name="presence-grace"
            )
        else:
            await self._gone(participant)

    async def _expire(self, participant: Participant) -> None:
        await asyncio.sleep(self._grace_seconds)
        participant.grace = None
        await self._gone(participant)

    async def _gone(self, participant: Participant) -> None:
        self._broadcast_presence(participant)
        key = participant.identity.key
        if not participant.invited and self._participants.get(key) is participant:
            del self._participants[key]
        stored = person_key(key)
        if participant.identity.kind == "guest" and stored not in self._barred:
            self._left_guests[stored] = time.monotonic()
            self._left_guests.move_to_end(stored)
        self._forget_guests()
        await self._record(participant.identity.actor, "left")
        self._quiet()

    @property
    def connections(self) -> list[Subscriber]:
        return [c for p in self._participants.values() for c in p.connections]

    # --- the host's intents --------------------------------------------------------------

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
        await self._record(identity.actor, "options_changed", **vars(options))
        self.options = options
        self._save_state()
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
        await self._record(
            identity.actor, "access_changed", locked=locked, waiting_room=waiting_room
        )
        self.options = options
        self._save_state()
        self._send_all({"type": "options", "options": vars(options)})
        if not waiting_room and not locked:
            # Not those who wait because a removed guest came from their address: a
            # host lets them in one by one, having looked.
            await self._admit(
                identity,
                [k for k in self._knocks.values() if k.address not in self._barred_addresses],
            )

    async def let_in(self, identity: Identity, knock_id: str | None) -> None:
        """Let in one waiting guest, or (None) everyone waiting."""
        self._require_host(identity)
        await self._admit(identity, self._knocks_named(knock_id))

    async def _admit(self, identity: Identity, knocks: list[Knock]) -> None:
        for knock in knocks:
            if knock.id not in self._knocks:
                continue  # its page closed, or another host decided first
            await self._record(identity.actor, "guest_let_in", name=knock.connection.identity.name)
            # Taken off the waiting list and in, with no await in between: a page that
            # closes meanwhile is gone from one or the other when it leaves.
            if self._knocks.pop(knock.id, None) is None:
                continue
            self._let_in.add(person_key(knock.connection.identity.key))
            await self._enter(knock.connection, knock.address)
        self._tell_hosts_who_waits()

    async def turn_away(self, identity: Identity, knock_id: str | None) -> None:
        """Turn away one waiting guest, or (None) everyone waiting: for the rest of
        the event, on that browser."""
        self._require_host(identity)
        turned_away = []
        for knock in self._knocks_named(knock_id):
            if knock.id not in self._knocks:
                continue  # its page closed, or another host decided first
            await self._record(
                identity.actor, "guest_turned_away", name=knock.connection.identity.name
            )
            if self._knocks.pop(knock.id, None) is None:
                continue
            self._barred[person_key(knock.connection.identity.key)] = Closing.TURNED_AWAY
            self._save_person(knock.connection.identity.key)
            turned_away.append(knock)
        self._forget_guests()
        self._tell_hosts_who_waits()
        await asyncio.gather(*(k.connection.close(Closing.TURNED_AWAY) for k in turned_away))

    async def remove(self, identity: Identity, participant_id: str) -> None:
        """Remove someone who is not a host: their pages close, and they cannot come
        back during the event (a guest on that browser; newcomers from their address
        wait to be let in)."""
        self._require_host(identity)
        participant = self._by_public_id(participant_id)
        if participant.identity.is_host:
            raise Refused("cannot_remove_host", "A staff member of the event cannot be removed.")
        await self._record(identity.actor, "participant_removed", participant=participant_id)
        self._barred[person_key(participant.identity.key)] = Closing.REMOVED
        address = participant.address if participant.identity.kind == "guest" else None
        if address is not None:
            self._barred_addresses.add(address)
        self._save_person(participant.identity.key, barred_address=address)
        self._forget_guests()
        # Their pages close before anything else waits on the database.
        connections = list(participant.connections)
        await asyncio.gather(*(c.close(Closing.REMOVED) for c in connections))
        for connection in connections:
            await self.leave(connection, at_once=True)

    async def _knock(self, knock: Knock) -> None:
        self._knocks[knock.id] = knock
        knock.connection.send(
            {
                "type": "waiting_room",
                "event": self._event_summary(),
                "server_time": now_ms(),
            }
        )
        self._tell_hosts_who_waits()
        await self._record(knock.connection.identity.actor, "guest_waiting")

    def _knock_of(self, connection: Subscriber) -> Knock | None:
        return next((k for k in self._knocks.values() if k.connection is connection), None)

    def _knocks_named(self, knock_id: str | None) -> list[Knock]:
        if knock_id is None:
            return list(self._knocks.values())
        knock = self._knocks.get(knock_id)
        if knock is None:
            raise Refused("unknown_guest", "Nobody with that id is waiting.")
        return [knock]

    def _waiting_list(self) -> list[dict[str, str]]:
        return [{"id": k.id, "name": k.connection.identity.name} for k in self._knocks.values()]

    def _tell_hosts_who_waits(self) -> None:
        message = {"type": "waiting", "guests": self._waiting_list()}
        for connection in self.connections:
            if connection.identity.is_host:
                connection.send(message)

    async def start(self, identity: Identity) -> None:
        self._require_host(identity)
        if self.started_at is not None:
            raise Refused("already_started", "The conference has started already.")
        await self._record(identity.actor, "conference_started", **vars(self.options))
        if self.started_at is not None:  # another host, meanwhile
            return
        self.started_at = utc_now()
        self._save_state()
        self._send_all({"type": "started", "started_at": epoch_ms(self.started_at)})
        self._broadcast_moderation()
        self._schedule_end()
        await self._follow_recording()

    async def set_shown(self, identity: Identity, participant_id: str, shown: bool) -> None:
        self._require_host(identity)
        participant = self._by_public_id(participant_id)
        if participant.shown == shown:
            return
        await self._record(identity.actor, "shown_changed", participant=participant_id, shown=shown)
        participant.shown = shown
        self._save_person(participant.identity.key)
        self._moderation_changed()

    async def set_permission(self, identity: Identity, participant_id: str, value: str) -> None:
        self._require_host(identity)
        participant = self._by_public_id(participant_id)
        try:
            permission = Permission(value)
        except ValueError:
            choices = ", ".join(p.value for p in Permission)
            raise Refused("bad_permission", f"permission: one of {choices}.") from None
        if participant.permission is permission:
            return
        await self._record(
            identity.actor, "permission_changed", participant=participant_id, permission=value
        )
        participant.permission = permission
        self._save_person(participant.identity.key)
        self._moderation_changed()

    async def end(self, identity: Identity) -> None:
        """The host ends the conference for everyone."""
        self._require_host(identity)
        await self._record(identity.actor, "conference_ended", by="host")
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
        await self._record(audit.SYSTEM, "conference_ended", by="time")
        await self._end("time")

    async def _end(self, by: Literal["host", "time"]) -> None:
        async with self._ending_or_opening:
            if self.ended_by is not None:
                return
            self.ended_by = by
            self._ended_slot = (self.event.start, self.event.end)
            self._save_state()
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
            await self._record(identity.actor, "conference_reopened", by="host")
            self._open_again()

    async def rescheduled(self) -> None:
        """The event has changed: ended in other times than the event has now, and
        those not passed, the conference opens again (the new invitations work)."""
        await self._restored()
        async with self._ending_or_opening:
            if self.ended_by is not None and _moved_ahead(self._ended_slot, self.event):
                await self._record(audit.SYSTEM, "conference_reopened", by="rescheduled")
                self._open_again()

    def _open_again(self) -> None:
        """As before the start, with the host's options, the moderator's choices and
        who is kept out as they were; the ended one's room and recording are closed."""
        self.started_at = self.ended_by = self._ended_slot = None
        self._shut = False
        self.room = self._rooms(self)
        self._recording = ConferenceRecording(self._composer, self.room, self._recording_stopped)
        self._save_state()

    # --- recording -------------------------------------------------------------------

    async def _follow_recording(self) -> None:
        """Recording on exactly while the host's option says so and the conference is on."""
        await self._recording.follow(self.event, self.options.recording and not self._shut)
        await self._note_present()

    def _recording_stopped(self, reason: str) -> None:
        """The recording could not go on: the indicator goes off, and the hosts learn
        why (and may start a new one)."""
        self.options = replace(self.options, recording=False)
        self._save_state()
        self._send_all({"type": "options", "options": vars(self.options)})
        for connection in self.connections:
            if connection.identity.is_host:
                connection.send({"type": "recording_failed", "message": reason})

    async def _note_present(self) -> None:
        in_media = self.room.present
        await self._recording.note_present(
            Attendee(p.public_id, p.identity.name, p.identity.kind, p.identity.person_id)
            for p in self._participants.values()
            if p.public_id in in_media
        )

    # --- media -----------------------------------------------------------------------

    async def join_media(self, connection: Subscriber) -> None:
        if self.started_at is None:
            raise Refused("not_started", "The conference has not started yet.")
        if self._shut:
            raise Refused("ended", "The conference has ended.")
        participant = self._participant_of(connection)
        await self.room.join(
            participant.public_id, connection, guest=participant.identity.kind == "guest"
        )
        await self._follow_recording()  # begun again if it was finished while quiet

    async def answer(self, connection: Subscriber, media_connection: str, sdp: str) -> None:
        participant = self._participant_of(connection)
        await self.room.answer(participant.public_id, connection, media_connection, sdp)

    @property
    def moderated(self) -> bool:
        return self.options.moderator

    def member(self, participant_id: str) -> Member:
        participant = self._by_public_id(participant_id)
        return Member(
            participant_id,
            host=participant.identity.is_host,
            permission=participant.permission,
            shown=participant.shown,
        )

    def label(self, viewer_id: str, subject_id: str) -> str:
        viewer = self._by_public_id(viewer_id).identity
        seen = _as_seen_by(viewer, self._by_public_id(subject_id))
        return UNNAMED if seen is None else str(seen["name"])

    def _moderation_changed(self) -> None:
        self.room.changed()
        self._broadcast_moderation()

    def _participant_of(self, connection: Subscriber) -> Participant:
        participant = self._participants.get(connection.identity.key)
        if participant is None or connection not in participant.connections:
            raise Refused("not_in_conference", "This link is no longer part of the event.")
        return participant

    def _by_public_id(self, participant_id: str) -> Participant:
        for participant in self._participants.values():
            if participant.public_id == participant_id:
                return participant
        raise Refused("unknown_participant", "No such participant in this conference.")

    async def close_pages(self, why: Closing, last_word: dict[str, Any] | None) -> None:
        """Tell every joined page `last_word` (if any), then close every open page."""
        if last_word is not None:
            for connection in self.connections:
                connection.send(last_word)
        await asyncio.gather(*(page.close(why) for page in list(self._pages)))

    # --- what each holder may see ------------------------------------------------------

    def _event_summary(self) -> dict[str, Any]:
        return {
            "title": self.event.title,
            "starts_at": epoch_ms(self.event.start),
            "ends_at": epoch_ms(self.event.end),
        }

    def _welcome(self, viewer: Identity, you: Participant) -> dict[str, Any]:
        waiting = {"waiting": self._waiting_list()} if viewer.is_host else {}
        return {
            **waiting,
            "type": "welcome",
            "you": {
                "id": you.public_id,
                "kind": viewer.kind,
                "name": viewer.name,
                "host": viewer.is_host,
            },
            "event": self._event_summary(),
            "options": vars(self.options),
            "started": self.started_at is not None,
            "moderation": self._moderation(viewer),
            "server_time": now_ms(),
            "participants": [
                seen
                for p in self._participants.values()
                if (seen := _as_seen_by(viewer, p)) is not None and (p.invited or p.active)
            ],
        }

    def _broadcast_presence(
        self, participant: Participant, skip: Collection[Subscriber] = ()
    ) -> None:
        for connection in self.connections:
            if connection in skip:
                continue
            seen = _as_seen_by(connection.identity, participant)
            if seen is not None:
                connection.send({"type": "presence", "participant": seen})

    def _moderation(self, viewer: Identity) -> dict[str, Any]:
        """The moderator's choices about the people `viewer` may see."""
        visible = [p for p in self._participants.values() if _as_seen_by(viewer, p) is not None]
        return {
            "moderator": self.options.moderator,
            "shown": [p.public_id for p in visible if p.shown],
            "permissions": {
                p.public_id: p.permission.value
                for p in visible
                if p.permission is not Permission.AUDIO_VIDEO
            },
        }

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

    async def _record(self, actor: audit.Actor, action: str, **detail: Any) -> None:
        async with self._db.transaction() as tx:
            if actor.kind == "guest":
                await audit.record_guest(tx, action, event_id=self.event.id, **detail)
            else:
                await audit.record(tx, actor, action, event_id=self.event.id, **detail)

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
        await self._recording.close(self.event)
        await self.room.close()
        for participant in list(self._participants.values()):
            grace, participant.grace = participant.grace, None
            _cancel(grace)
            if grace is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await grace
                # Who was about to come back will not: gone now, and the conference,
                # once nobody is in it, no longer kept.
                await self._gone(participant)
        # Whatever was not written yet is, before the server goes.
        for task in (self._restoring, self._saver):
            if task is not None:
                with contextlib.suppress(Exception):
                    await task


def _as_seen_by(viewer: Identity, participant: Participant) -> dict[str, Any] | None:
    """A participant as `viewer` may see them: staff see everyone; a patient sees
    the staff, themselves, and each guest only as "Guest" (an outsider's picture and
    voice never come unannounced); a guest sees staff and guests, and patients only as
    "Patient". `anonymous`: the name is the stand-in, not the person's."""
    subject = participant.identity
    if viewer.kind == "patient" and subject.kind == "patient" and subject.key != viewer.key:
        return None
    stand_in = _STAND_INS.get((viewer.kind, subject.kind))
    return {
        "id": participant.public_id,
        "kind": subject.kind,
        "name": subject.name if stand_in is None else stand_in,
        "anonymous": stand_in is not None,
        "active": participant.active,
        "invited": participant.invited,
    }


def _moved_ahead(ended_slot: Slot | None, event: Event) -> bool:
    """The event has times other than those its conference ended in (unknown: ended
    before they were kept), and they have not passed."""
    return ended_slot != (event.start, event.end) and event.end > utc_now()


def _new_id() -> str:
    return secrets.token_hex(6)


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()


class Conferences:
    """The live conferences of this server, one per event with a page open or
    someone about to come back."""

    def __init__(
        self, db: Database, grace_seconds: float, rooms: RoomFactory, composer: Composer
    ) -> None:
        self._db = db
        self._grace_seconds = grace_seconds
        self._rooms = rooms
        self._composer = composer
        self._states = ConferenceStates(db)
        self._conferences: dict[int, Conference] = {}

    def open(self, event: Event) -> Conference:
        """The event's conference, made when its first page opens."""
        for other in list(self._conferences.values()):
            self._forget(other)
        conference = self._conferences.get(event.id)
        if conference is None:
            conference = Conference(
                event,
                self._db,
                self._grace_seconds,
                self._rooms,
                self._composer,
                self._states,
                self._forget,
            )
            self._conferences[event.id] = conference
        else:
            conference.invite(event)
        return conference

    def get(self, event_id: int) -> Conference | None:
        return self._conferences.get(event_id)

    def _forget(self, conference: Conference) -> None:
        """A conference is kept until its event has ended and nobody is in it: who
        comes back before the end finds the host's options and start as they were."""
        gone = conference.unused and conference.event.end <= utc_now()
        if gone and self._conferences.get(conference.event.id) is conference:
            del self._conferences[conference.event.id]

    async def event_changed(self, event: Event) -> None:
        """The Scheduler changed or cancelled the event: open pages learn it at once.
        An ended conference whose event was moved to times ahead opens again."""
        conference = self._conferences.get(event.id)
        if conference is None and not event.cancelled:
            if event.end > utc_now():
                await self._states.open_again_if_moved(event.id, (event.start, event.end))
            # Opened meanwhile, it may have read the state from before: it checks too.
            conference = self._conferences.get(event.id)
        if conference is None:
            return
        if event.cancelled:
            del self._conferences[event.id]
            await conference.shut()
            await conference.close_pages(Closing.CANCELLED, {"type": "cancelled"})
            return
        conference.invite(event)
        await conference.rescheduled()
        # Each page reconnects and gets the new picture; a person taken off the
        # event finds their link gone.
        await conference.close_pages(Closing.EVENT_CHANGED, None)

    async def close(self) -> None:
        """Server shutdown: every page is told to go away, every timer stops."""
        conferences, self._conferences = list(self._conferences.values()), {}
        for conference in conferences:
            await conference.shut()
            await conference.close_pages(Closing.SHUTTING_DOWN, None)
