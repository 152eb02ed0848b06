"""Per-conference live state: who is present, the host's options, whether the
conference has started. One `Conference` per event, kept by the `Conferences`
registry; the pages' connections read it and send intents back through its
methods, which apply the rules (only a host may start or change options) and tell
every connection what changed, as that connection's holder may see it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from . import audit
from .db import Database, utc_now
from .errors import Conflict, PermissionDenied
from .scheduling import Event

ParticipantKind = Literal["staff", "patient", "guest"]
PUBLIC_PATIENT_NAME: Final = "Patient"
# Closing a page's socket because its event was cancelled, or changed (the page
# reconnects and sees the new state; a person taken off the event cannot).
CLOSE_CANCELLED: Final = 4410
CLOSE_EVENT_CHANGED: Final = 4000
CLOSE_FULL: Final = 4429
# Far more than any clinic's conference; a bound on what one public link can bring in.
MAX_PAGES: Final = 500


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

    async def close(self, code: int, reason: str) -> None: ...


class Subscriber(Protocol):
    """A page's connection once it has joined, as the conference sees it."""

    identity: Identity

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; never blocks (a connection that cannot keep up closes)."""

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class Participant:
    public_id: str
    identity: Identity
    # Linked to the event: listed (as inactive) even when not there.
    invited: bool
    connections: set[Subscriber] = field(default_factory=set)
    # Counting down to "inactive" after the last connection closed.
    grace: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.connections) or self.grace is not None


@dataclass(frozen=True)
class Options:
    moderator: bool = False
    recording: bool = False


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    """The server's clock, which every page's "Time Left" follows."""
    return time.time_ns() // 1_000_000


class Conference:
    def __init__(
        self,
        event: Event,
        db: Database,
        grace_seconds: float,
        quiet: Callable[[Conference], None] = lambda conference: None,
    ) -> None:
        self._db = db
        self._grace_seconds = grace_seconds
        # Told when the last page has gone and nobody is about to come back.
        self._on_quiet = quiet
        self.event = event
        self.options = Options()
        self.started_at: datetime | None = None
        self._participants: dict[str, Participant] = {}
        # Every open page, joined or not yet: each is closed with the conference.
        self._pages: set[Page] = set()
        self._shut = False
        self.invite(event)

    # --- open pages --------------------------------------------------------------------

    def attach(self, page: Page) -> None:
        if len(self._pages) >= MAX_PAGES:
            raise Conflict("This conference is full.")
        self._pages.add(page)

    def detach(self, page: Page) -> None:
        self._pages.discard(page)
        self._quiet()

    @property
    def unused(self) -> bool:
        """No page is open and nobody is about to come back."""
        return not self._pages and not any(p.active for p in self._participants.values())

    def _quiet(self) -> None:
        if self.unused:
            self._on_quiet(self)

    # --- who is expected ---------------------------------------------------------------

    def invite(self, event: Event) -> None:
        """Take the event's current people as the expected participants."""
        self.event = event
        invited = [Identity("staff", s.name, s.id) for s in event.staff]
        invited += [Identity("patient", p.name, p.id) for p in event.patients]
        for identity in invited:
            participant = self._participants.get(identity.key)
            if participant is None:
                self._participants[identity.key] = Participant(_new_id(), identity, invited=True)
            else:
                participant.invited = True
        # Someone taken off the event is gone at once: their link no longer works.
        keys = {identity.key for identity in invited}
        for key, participant in list(self._participants.items()):
            if participant.invited and key not in keys:
                _cancel(participant.grace)
                del self._participants[key]

    # --- connections -------------------------------------------------------------------

    async def join(self, connection: Subscriber) -> None:
        """Add a page and send it its `welcome` snapshot, before anything else."""
        identity = connection.identity
        participant = self._participants.get(identity.key)
        if participant is None:
            # A guest, or a staff member with a link of their own.
            participant = Participant(_new_id(), identity, invited=False)
            self._participants[identity.key] = participant
        was_active = participant.active
        _cancel(participant.grace)
        participant.grace = None
        participant.connections.add(connection)
        connection.send(self._welcome(identity, participant))
        if not was_active:
            # The others hear of the arrival; the newcomer learns it from the welcome.
            self._broadcast_presence(participant, skip=participant.connections)
            await self._record(identity, "joined")

    async def leave(self, connection: Subscriber) -> None:
        participant = self._participants.get(connection.identity.key)
        if participant is None or connection not in participant.connections:
            return
        participant.connections.discard(connection)
        if participant.connections:
            return
        if self._grace_seconds > 0 and not self._shut:
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
        await self._record(participant.identity, "left")
        self._quiet()

    @property
    def connections(self) -> list[Subscriber]:
        return [c for p in self._participants.values() for c in p.connections]

    # --- the host's intents --------------------------------------------------------------

    async def set_options(self, identity: Identity, options: Options) -> None:
        self._require_host(identity)
        if self.started_at is not None:
            raise Conflict("The conference has started: its options are set.")
        if options == self.options:
            return
        self.options = options
        await self._record(identity, "options_changed", **vars(options))
        self._send_all({"type": "options", "options": vars(options)})

    async def start(self, identity: Identity) -> None:
        self._require_host(identity)
        if self.started_at is not None:
            raise Conflict("The conference has started already.")
        self.started_at = utc_now()
        await self._record(identity, "conference_started", **vars(self.options))
        self._send_all({"type": "started", "started_at": epoch_ms(self.started_at)})

    async def close_pages(self, code: int, reason: str, last_word: dict[str, Any] | None) -> None:
        """Tell every joined page `last_word` (if any), then close every open page."""
        if last_word is not None:
            for connection in self.connections:
                connection.send(last_word)
        await asyncio.gather(*(page.close(code, reason) for page in list(self._pages)))

    # --- what each holder may see ------------------------------------------------------

    def _welcome(self, viewer: Identity, you: Participant) -> dict[str, Any]:
        return {
            "type": "welcome",
            "you": {
                "id": you.public_id,
                "kind": viewer.kind,
                "name": viewer.name,
                "host": viewer.is_host,
            },
            "event": {
                "title": self.event.title,
                "starts_at": epoch_ms(self.event.start),
                "ends_at": epoch_ms(self.event.end),
            },
            "options": vars(self.options),
            "started": self.started_at is not None,
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

    def _send_all(self, message: dict[str, Any]) -> None:
        for connection in self.connections:
            connection.send(message)

    @staticmethod
    def _require_host(identity: Identity) -> None:
        if not identity.is_host:
            raise PermissionDenied("Only a staff member of the event can do this.")

    async def _record(self, identity: Identity, action: str, **detail: Any) -> None:
        async with self._db.transaction() as tx:
            await audit.record(tx, identity.actor, action, event_id=self.event.id, **detail)

    async def shut(self) -> None:
        """No more grace periods: the conference is over for this server."""
        self._shut = True
        for participant in self._participants.values():
            grace, participant.grace = participant.grace, None
            _cancel(grace)
            if grace is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await grace


def _as_seen_by(viewer: Identity, participant: Participant) -> dict[str, Any] | None:
    """A participant as `viewer` may see them: staff see everyone; a patient sees
    the staff and themselves; a guest sees staff and guests, and patients only as
    "Patient"."""
    subject = participant.identity
    name = subject.name
    if viewer.kind == "patient" and subject.kind != "staff" and subject.key != viewer.key:
        return None
    if viewer.kind == "guest" and subject.kind == "patient":
        name = PUBLIC_PATIENT_NAME
    return {
        "id": participant.public_id,
        "kind": subject.kind,
        "name": name,
        "active": participant.active,
        "invited": participant.invited,
    }


def _new_id() -> str:
    return secrets.token_hex(6)


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()


class Conferences:
    """The live conferences of this server, one per event with a page open or
    someone about to come back."""

    def __init__(self, db: Database, grace_seconds: float) -> None:
        self._db = db
        self._grace_seconds = grace_seconds
        self._conferences: dict[int, Conference] = {}

    def open(self, event: Event) -> Conference:
        """The event's conference, made when its first page opens."""
        for other in list(self._conferences.values()):
            self._forget(other)
        conference = self._conferences.get(event.id)
        if conference is None:
            conference = Conference(event, self._db, self._grace_seconds, self._forget)
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
        """The Scheduler changed or cancelled the event: open pages learn it at once."""
        conference = self._conferences.get(event.id)
        if conference is None:
            return
        if event.cancelled:
            del self._conferences[event.id]
            await conference.shut()
            await conference.close_pages(CLOSE_CANCELLED, "cancelled", {"type": "cancelled"})
            return
        conference.invite(event)
        # Each page reconnects and gets the new picture; a person taken off the
        # event finds their link gone.
        await conference.close_pages(CLOSE_EVENT_CHANGED, "event changed", None)

    async def close(self) -> None:
        """Server shutdown: every page is told to go away, every timer stops."""
        conferences, self._conferences = list(self._conferences.values()), {}
        for conference in conferences:
            await conference.shut()
            await conference.close_pages(1001, "server shutting down", None)
