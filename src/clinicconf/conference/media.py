"""What a conference needs of its media, in its own terms: the port that the aiortc
room (sfu/room.py) implements in this process, and that a media process could
implement behind a socket. Everything that crosses it, either way, is plain data:
participant and page ids, SDP text, JSON-ready page messages, and frozen dataclasses
(`Member`, the `Lineup`, the recording's `Attendee`, the `Event`); no live object of
either side crosses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..moderation import Member
from ..page_messages import MediaMessage, ParticipantKind
from ..recording.store import Attendee
from ..schedule import Event


@dataclass(frozen=True)
class Lineup:
    """What the media forwards by, as the conference has decided it: everyone it
    knows, with their routing facts and the name each kind of viewer may see under
    their video. Sent whole with every change, so the media never asks back."""

    moderated: bool = False
    members: Mapping[str, Member] = field(default_factory=dict)
    kinds: Mapping[str, ParticipantKind] = field(default_factory=dict)
    # By subject, then by the viewer's kind: the subject's name as that viewer sees it.
    names: Mapping[str, Mapping[ParticipantKind, str]] = field(default_factory=dict)

    def label(self, viewer: str, subject: str) -> str:
        """`subject`'s name under their video, as `viewer` receives it."""
        return self.names[subject][self.kinds[viewer]]


class ConferenceMedia(Protocol):
    """The conference's media: peers, the forwarding between them, the recording."""

    @property
    def can_record(self) -> bool: ...

    async def join(self, participant: str, page: str, *, guest: bool) -> None:
        """Open `page`'s media connection; another page of the same person loses its
        own. Raises Refused when there is no room (guests) or the media has closed."""

    async def answer(self, participant: str, page: str, connection: str, sdp: str) -> None:
        """The page's SDP answer to the latest offer of `connection`."""

    async def leave(self, participant: str, page: str) -> None:
        """The page has gone (or left): its media stops everywhere."""

    def remove(self, participant: str) -> None:
        """The person is no longer in the conference (taken off the event)."""

    def changed(self, lineup: Lineup) -> None:
        """The forwarding decision changed (who is here, who is shown, who may send
        what): the media applies `lineup`, soon and once."""

    async def follow_recording(
        self, event: Event, wanted: bool, attendees: Iterable[Attendee]
    ) -> None:
        """Recording on exactly when `wanted` (begun, paused, resumed); those of
        `attendees` in the media now took part in it."""

    def finish_recording_soon(self, event: Event) -> None:
        """Nobody is left: what was recorded is finished and composed, if anything."""

    async def close(self, event: Event) -> None:
        """The conference is over for this server: the recording is finished, every
        media connection closed."""


class MediaRoster(Protocol):
    """What the media tells its conference."""

    def send(self, page: str, message: MediaMessage) -> None:
        """Tell one page something about its media (offers, tracks, closings)."""

    def recording_stopped(self, reason: str) -> None:
        """The recording could not go on, for `reason`."""


MediaFactory = Callable[[MediaRoster], ConferenceMedia]
