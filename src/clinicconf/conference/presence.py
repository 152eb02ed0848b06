"""Who is in a conference: the participants it knows (those linked to the event are
listed even when not there), the pages each holds, and the grace period that keeps
someone present for a while after their last page closed (a reload, a dropped
network), so that the others do not see them leave and come back."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import Refused
from ..moderation import Permission
from .identity import Identity, Subscriber


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


def new_participant(identity: Identity, invited: bool) -> Participant:
    """In moderator mode the staff are on screen until the host says otherwise, and a
    public guest uses neither audio nor video until the host allows it: someone the
    host silenced cannot come back unsilenced under another name or browser."""
    permission = Permission.NONE if identity.kind == "guest" else Permission.AUDIO_VIDEO
    return Participant(new_id(), identity, invited, shown=identity.is_host, permission=permission)


def new_id() -> str:
    return secrets.token_hex(6)


class Presence:
    """The conference's participants, by identity key, in the order it met them."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self._participants: dict[str, Participant] = {}

    def __iter__(self) -> Iterator[Participant]:
        return iter(self._participants.values())

    def get(self, identity_key: str) -> Participant | None:
        return self._participants.get(identity_key)

    def add(self, participant: Participant) -> None:
        self._participants[participant.identity.key] = participant

    @property
    def connections(self) -> list[Subscriber]:
        return [c for p in self._participants.values() for c in p.connections]

    def invite(self, invited: Iterable[Identity]) -> list[Participant]:
        """Those linked to the event now are listed; those no longer linked are gone
        at once (their link no longer works): returned."""
        keys = set()
        for identity in invited:
            keys.add(identity.key)
            participant = self._participants.get(identity.key)
            if participant is None:
                self._participants[identity.key] = new_participant(identity, invited=True)
            else:
                participant.invited = True
        removed = []
        for key, participant in list(self._participants.items()):
            if participant.invited and key not in keys:
                _cancel(participant.grace)
                del self._participants[key]
                removed.append(participant)
        return removed

    def of(self, connection: Subscriber) -> Participant:
        """The participant a joined page is for."""
        participant = self._participants.get(connection.identity.key)
        if participant is None or connection not in participant.connections:
            raise Refused("not_in_conference", "This link is no longer part of the event.")
        return participant

    def by_public_id(self, participant_id: str) -> Participant:
        for participant in self._participants.values():
            if participant.public_id == participant_id:
                return participant
        raise Refused("unknown_participant", "No such participant in this conference.")

    def arrive(self, participant: Participant, connection: Subscriber) -> bool:
        """A page of theirs has joined; True if they were not present before."""
        was_active = participant.active
        _cancel(participant.grace)
        participant.grace = None
        participant.connections.add(connection)
        return not was_active

    def wait_for_return(
        self, participant: Participant, gone: Callable[[Participant], Awaitable[None]]
    ) -> None:
        """Their last page has closed: `gone` once the grace period is over."""

        async def expire() -> None:
            await asyncio.sleep(self.grace_seconds)
            participant.grace = None
            await gone(participant)

        participant.grace = asyncio.create_task(expire(), name="presence-grace")

    def forget(self, participant: Participant) -> None:
        """Gone, and not linked to the event: no longer listed."""
        key = participant.identity.key
        if not participant.invited and self._participants.get(key) is participant:
            del self._participants[key]

    async def end_graces(self) -> list[Participant]:
        """No more grace periods: those who were about to come back, whom they were."""
        ended = []
        for participant in list(self._participants.values()):
            grace, participant.grace = participant.grace, None
            _cancel(grace)
            if grace is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await grace
                ended.append(participant)
        return ended


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
