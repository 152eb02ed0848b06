"""The conference's side of the media port (media.MediaRoster): what the media reads
of the participants (their routing facts, their names as each viewer may see them)
and the pages it writes to, known to it by ids of their own."""

from __future__ import annotations

from collections.abc import Callable

from ..moderation import Member
from ..page_messages import MediaMessage
from . import visibility
from .identity import Subscriber
from .presence import Presence, new_id


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

    @property
    def moderated(self) -> bool:
        return self._moderated()

    def member(self, participant: str) -> Member:
        subject = self._presence.by_public_id(participant)
        return Member(
            participant,
            host=subject.identity.is_host,
            permission=subject.permission,
            shown=subject.shown,
        )

    def label(self, viewer: str, subject: str) -> str:
        return visibility.label(
            self._presence.by_public_id(viewer).identity,
            self._presence.by_public_id(subject).identity,
        )
