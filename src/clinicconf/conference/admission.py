"""Who may come into a conference, and with how many pages: the bounds on open
pages, the waiting room's knocks, the guests let in, and those kept out (removed or
turned away, by browser, and the addresses removed guests came from), for the
conference's life; what is kept of guests who left is bounded too."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from ..errors import Refused
from ..page_messages import WaitingGuest
from .identity import Closing, Identity, Page, Subscriber
from .persistence import SavedPerson, StateSaver, person_key
from .presence import new_id

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


class Admission:
    """Keeping people out, by stored person key (persistence.person_key)."""

    def __init__(self, saver: StateSaver) -> None:
        self._saver = saver
        # Every open page, joined or not yet: each is closed with the conference.
        self._pages: dict[Page, _Claim] = {}
        self._knocks: dict[str, Knock] = {}
        # Let in once: they come back without waiting.
        self.let_in: set[str] = set()
        # Removed or turned away, with why; and the addresses removed guests came from.
        self.barred: dict[str, Closing] = {}
        self.barred_addresses: set[str] = set()
        # Guests who left (-> when), the longest gone first.
        self._left_guests: OrderedDict[str, float] = OrderedDict()

    # --- open pages --------------------------------------------------------------------

    @property
    def pages(self) -> list[Page]:
        return list(self._pages)

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

    # --- who is kept out ---------------------------------------------------------------

    def take_up(self, people: Mapping[str, SavedPerson]) -> None:
        """What was kept of each person when the server last ran."""
        for key, person in people.items():
            if person.kept_out is not None:
                self.barred[key] = Closing(person.kept_out)
            if person.barred_address is not None:
                self.barred_addresses.add(person.barred_address)
            if person.let_in:
                self.let_in.add(key)
            if key.startswith("guest:") and person.kept_out is None:
                self._left_guests[key] = time.monotonic()  # forgotten as if they left now

    def must_wait(
        self,
        identity: Identity,
        address: str | None,
        *,
        newcomer: bool,
        locked: bool,
        waiting_room: bool,
    ) -> bool:
        """Whether this page waits for a host to let it in (the host's options:
        `locked`, `waiting_room`); raises KeptOut if it may not come in at all.
        `newcomer`: never in the conference before."""
        barred = self.barred.get(person_key(identity.key))
        if barred is not None:
            raise KeptOut(barred)
        if identity.kind != "guest" or not newcomer:
            return False
        if locked:
            raise KeptOut(Closing.LOCKED)
        must_wait = waiting_room or address in self.barred_addresses
        if must_wait and person_key(identity.key) not in self.let_in:
            if len(self._knocks) >= MAX_WAITING:
                raise KeptOut(Closing.WAITING_ROOM_FULL)
            return True
        return False

    def bar(self, identity_key: str, why: Closing, address: str | None = None) -> None:
        self.barred[person_key(identity_key)] = why
        if address is not None:
            self.barred_addresses.add(address)

    def is_barred(self, identity_key: str) -> bool:
        return person_key(identity_key) in self.barred

    # --- the waiting room --------------------------------------------------------------

    def knock(self, connection: Subscriber, address: str | None) -> Knock:
        knock = Knock(new_id(), connection, address)
        self._knocks[knock.id] = knock
        return knock

    def knock_of(self, connection: Subscriber) -> Knock | None:
        return next((k for k in self._knocks.values() if k.connection is connection), None)

    def is_waiting(self, knock: Knock) -> bool:
        return knock.id in self._knocks

    def take(self, knock: Knock) -> bool:
        """Off the waiting list; False if it was not on it (any more)."""
        return self._knocks.pop(knock.id, None) is not None

    def let_in_now(self, knock: Knock) -> bool:
        """Off the waiting list and let in, for good on that browser; False if it was
        not waiting (any more)."""
        if not self.take(knock):
            return False
        self.let_in.add(person_key(knock.connection.identity.key))
        return True

    def waiting_from_unbarred_addresses(self) -> list[Knock]:
        """Everyone waiting except those who wait because a removed guest came from
        their address."""
        return [k for k in self._knocks.values() if k.address not in self.barred_addresses]

    def knocks_named(self, knock_id: str | None) -> list[Knock]:
        """One waiting guest's knock, or (None) everyone's."""
        if knock_id is None:
            return list(self._knocks.values())
        knock = self._knocks.get(knock_id)
        if knock is None:
            raise Refused("unknown_guest", "Nobody with that id is waiting.")
        return [knock]

    def waiting_list(self) -> list[WaitingGuest]:
        return [
            WaitingGuest(id=k.id, name=k.connection.identity.name) for k in self._knocks.values()
        ]

    # --- what is kept of guests --------------------------------------------------------

    def entered(self, identity_key: str) -> None:
        self._left_guests.pop(person_key(identity_key), None)

    def left(self, identity: Identity) -> None:
        stored = person_key(identity.key)
        if identity.kind == "guest" and stored not in self.barred:
            self._left_guests[stored] = time.monotonic()
            self._left_guests.move_to_end(stored)

    def forget_guests(self) -> None:
        """What FORGET_GUESTS_AFTER_SECONDS, MAX_LEFT_GUESTS and MAX_BARRED_GUESTS say."""
        long_ago = time.monotonic() - FORGET_GUESTS_AFTER_SECONDS
        left = self._left_guests
        while left and (len(left) > MAX_LEFT_GUESTS or next(iter(left.values())) <= long_ago):
            key, _ = left.popitem(last=False)
            self._forget(key)
        barred = [key for key in self.barred if key.startswith("guest:")]
        oldest = barred[: max(0, len(barred) - MAX_BARRED_GUESTS)]
        for key in oldest:
            del self.barred[key]
            self._forget(key)
        if oldest:  # the addresses still kept out: those of the barred kept
            self.barred_addresses = {
                p.barred_address for p in self._saver.people.values() if p.barred_address
            }

    def _forget(self, key: str) -> None:
        self.let_in.discard(key)
        self._saver.forget(key)
