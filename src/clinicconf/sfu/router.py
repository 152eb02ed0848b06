"""The track router: from the conference state, which publisher's audio and video
go to which subscriber. Pure: no media, no I/O, so every rule of the moderator is
tested here without a single packet (and enforced by `room`, which applies the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..moderation import KINDS, Kind, Member


@dataclass(frozen=True)
class Route:
    publisher: str
    kind: Kind
    subscriber: str


def routes(members: Iterable[Member], moderated: bool) -> frozenset[Route]:
    """Without moderator mode everyone receives everyone else. In moderator mode
    audio goes out only if permitted; video only if permitted, and then to the
    hosts always (they choose whom to show) and to the others while shown."""
    everyone = list(members)
    table = set()
    for publisher in everyone:
        for subscriber in everyone:
            if subscriber.id == publisher.id:
                continue
            for kind in KINDS:
                if _forwarded(publisher, kind, subscriber, moderated):
                    table.add(Route(publisher.id, kind, subscriber.id))
    return frozenset(table)


def recorded(members: Iterable[Member], moderated: bool) -> frozenset[tuple[str, Kind]]:
    """What the recording takes: what everyone sees and hears, as a participant who
    is not a host would (so what the moderator withheld from everyone is not in it)."""
    audience = Member("", host=False)
    return frozenset(
        (publisher.id, kind)
        for publisher in members
        for kind in KINDS
        if _forwarded(publisher, kind, audience, moderated)
    )


def _forwarded(publisher: Member, kind: Kind, subscriber: Member, moderated: bool) -> bool:
    if not moderated:
        return True
    if not publisher.permission.allows(kind):
        return False
    return kind == "audio" or subscriber.host or publisher.shown
