"""Who is who in a conference: the kinds of participant, whom a page speaks for
(`Identity`), the pages' sockets as the conference sees them, and why it closes one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .. import audit
from ..page_messages import ParticipantKind, ServerMessage


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

    def send(self, message: ServerMessage) -> None:
        """Queue a message; never blocks (a connection that cannot keep up closes)."""

    async def close(self, why: Closing) -> None: ...
