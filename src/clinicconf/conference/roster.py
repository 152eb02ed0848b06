"""The conference's side of the media port: the lineup the media forwards by (each
participant's routing facts, their names as each kind of viewer may see them), and
the pages the media writes to (media.MediaRoster), known to it by ids of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, get_args

from ..moderation import Member
from ..page_messages import MediaMessage, ParticipantKind
from . import visibility
from .identity import Subscriber
from .media import Lineup
from .presence import Presence, new_id

VIEWER_KINDS: Final[tuple[ParticipantKind, ...]] = get_args(ParticipantKind)


class Roster:
    def __init__(
        self,
        presence: Presence,
        moderated: Callable[[], bool],
        recording_stopped: Callable[[str], None],
    ) -> None:
        self._presence = presence
        self._moderated = moderated
        self.recording_stopped = recording_stopped
        # The pages in the media, by the id the media knows them by, both ways.
        self._ids: dict[Subscriber, str] = {}
        self._pages: dict[str, Subscriber] = {}

    def page_id(self, connection: Subscriber) -> str:
        """The id the media knows this page by (given at its first use)."""
        page = self._ids.get(connection)
        if page is None:
            page = self._ids[connection] = new_id()
            self._pages[page] = connection
        return page

    def page_gone(self, connection: Subscriber) -> str | None:
        """The page has gone: its id, if the media knew it."""
        page = self._ids.pop(connection, None)
        if page is not None:
            del self._pages[page]
        return page

    def send(self, page: str, message: MediaMessage) -> None:
        connection = self._pages.get(page)
        if connection is not None:
            connection.send(message)

    def lineup(self) -> Lineup:
        """Everyone in the conference, as the media forwards by them now."""
        people = list(self._presence)
        return Lineup(
            moderated=self._moderated(),
            members={
                p.public_id: Member(
                    p.public_id, host=p.identity.is_host, permission=p.permission, shown=p.shown
                )
                for p in people
            },
            kinds={p.public_id: p.identity.kind for p in people},
            names={
                p.public_id: {kind: visibility.label_for(kind, p.identity) for kind in VIEWER_KINDS}
                for p in people
            },
        )
