"""What each person may see of the others: one rule (`seen_by`) for the conference's
messages and for the landing page alike. Staff see everyone; a patient sees the
staff, themselves, and each guest only as "Guest" (an outsider's picture and voice
never come unannounced); a guest sees staff and guests, and patients only as
"Patient". And the pages told so (`Audience`), with the times a page is shown, on
the server's clock."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ..moderation import Permission
from ..page_messages import (
    EventSummary,
    Moderation,
    ModerationState,
    ParticipantKind,
    SeenParticipant,
    ServerMessage,
)
from ..page_messages import Presence as PresenceMessage
from ..schedule import Event
from .identity import Identity, Subscriber
from .presence import Participant, Presence

# Who is shown to whom by kind alone, (viewer, subject): a patient to a public guest,
# and a guest to a patient.
_STAND_INS: Final[dict[tuple[ParticipantKind, ParticipantKind], str]] = {
    ("guest", "patient"): "Patient",
    ("patient", "guest"): "Guest",
}
# Someone a patient may not see by name, in the names of the videos they receive.
UNNAMED: Final = "Participant"


@dataclass(frozen=True)
class Seen:
    """Someone as a viewer may see them. `anonymous`: `name` is a stand-in."""

    name: str
    anonymous: bool


def seen_by(viewer: Identity, subject: Identity) -> Seen | None:
    """`subject` as `viewer` may see them; None: not at all (another patient)."""
    if viewer.kind == "patient" and subject.kind == "patient" and subject.key != viewer.key:
        return None
    stand_in = _STAND_INS.get((viewer.kind, subject.kind))
    return Seen(subject.name, False) if stand_in is None else Seen(stand_in, True)


def as_seen_by(viewer: Identity, participant: Participant) -> SeenParticipant | None:
    """A participant as `viewer` may see them, as the pages are told."""
    subject = participant.identity
    seen = seen_by(viewer, subject)
    if seen is None:
        return None
    return SeenParticipant(
        id=participant.public_id,
        kind=subject.kind,
        name=seen.name,
        anonymous=seen.anonymous,
        active=participant.active,
        invited=participant.invited,
    )


def label_for(viewer: ParticipantKind, subject: Identity) -> str:
    """`subject`'s name under their video, as a viewer of that kind receives it (no
    one receives their own video: a patient sees another patient unnamed)."""
    if viewer == "patient" and subject.kind == "patient":
        return UNNAMED
    return _STAND_INS.get((viewer, subject.kind), subject.name)


def moderation_seen_by(
    viewer: Identity, participants: Iterable[Participant], moderator: bool
) -> ModerationState:
    """The moderator's choices about the people `viewer` may see."""
    visible = [p for p in participants if seen_by(viewer, p.identity) is not None]
    return ModerationState(
        moderator=moderator,
        shown=[p.public_id for p in visible if p.shown],
        permissions={
            p.public_id: p.permission.value
            for p in visible
            if p.permission is not Permission.AUDIO_VIDEO
        },
    )


def event_summary(event: Event) -> EventSummary:
    return EventSummary(
        title=event.title, starts_at=epoch_ms(event.start), ends_at=epoch_ms(event.end)
    )


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    """The server's clock, which every page's "Time Left" follows."""
    return time.time_ns() // 1_000_000


class Audience:
    """The joined pages, each told what its holder may see."""

    def __init__(self, presence: Presence) -> None:
        self._presence = presence

    def send_all(self, message: ServerMessage) -> None:
        for connection in self._presence.connections:
            connection.send(message)

    def tell_hosts(self, message: ServerMessage) -> None:
        for connection in self._presence.connections:
            if connection.identity.is_host:
                connection.send(message)

    def presence_of(self, participant: Participant, skip: Collection[Subscriber] = ()) -> None:
        """Whether `participant` is here, to everyone who may see them."""
        for connection in self._presence.connections:
            if connection in skip:
                continue
            seen = as_seen_by(connection.identity, participant)
            if seen is not None:
                connection.send(PresenceMessage(type="presence", participant=seen))

    def moderation(self, moderator: bool, skip: Collection[Subscriber] = ()) -> None:
        """The moderator's choices, to each page about those its holder may see."""
        for connection in self._presence.connections:
            if connection not in skip:
                seen = moderation_seen_by(connection.identity, self._presence, moderator)
                connection.send(Moderation(type="moderation", **seen))
