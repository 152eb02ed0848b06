"""The live conferences of this server, one per event with a page open or someone
about to come back: opened with the first page, told when the Scheduler changes or
cancels an event, closed with the server."""

from __future__ import annotations

from ..db import Database, utc_now
from ..page_messages import Cancelled
from ..schedule import Event
from .coordinator import Conference
from .identity import Closing
from .media import MediaFactory
from .persistence import ConferenceStates


class Conferences:
    def __init__(self, db: Database, grace_seconds: float, media: MediaFactory) -> None:
        self._db = db
        self._grace_seconds = grace_seconds
        self._media = media
        self._states = ConferenceStates(db)
        self._conferences: dict[int, Conference] = {}

    def open(self, event: Event) -> Conference:
        """The event's conference, made when its first page opens."""
        for other in list(self._conferences.values()):
            self._forget(other)
        conference = self._conferences.get(event.id)
        if conference is None:
            conference = Conference(
                event, self._db, self._grace_seconds, self._media, self._states, self._forget
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
            await conference.close_pages(Closing.CANCELLED, Cancelled(type="cancelled"))
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
