"""Handing out an event's join links: copied for a linked person, one of the staff
member's own, the public one, sent by email or text message, or all of them for the
API. Only those who may change the event may, and each handout is audited."""

from __future__ import annotations

from collections.abc import Callable

from .. import audit
from ..accounts import StaffUser
from ..db import Database, Transaction
from ..errors import Conflict, NotFound, ValidationError
from ..links import JoinLinks
from ..notify import outbox
from ..notify.outbox import Channel
from ..schedule import Event, PersonKind, require_may_change
from .records import load_event


class LinkHandout:
    def __init__(self, db: Database, links: JoinLinks, messages_queued: Callable[[], None]) -> None:
        self._db = db
        self._links = links
        # Wakes the outbox sender once a link to send has been committed.
        self._messages_queued = messages_queued

    async def person_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int
    ) -> str:
        """A linked person's join link, for staff to copy; the copy is audited."""
        async with self._db.transaction() as tx:
            event = await _open_event_with_video(tx, event_id)
            require_may_change(user, event)
            if event.person(kind, person_id) is None:
                raise NotFound(f"This {kind} is not linked to the event.")
            link_id = await self._links.ensure(tx, event_id, kind, person_id)
            url = await self._links.url(tx, link_id)
            await audit.record(
                tx, user.actor, "link_copied", event_id=event_id, subject=(kind, person_id)
            )
        return url

    async def my_link(self, user: StaffUser, event_id: int) -> str:
        """The signed-in staff member's own link, created for an administrator who is
        not linked. A staff link makes its holder a host, who sees and hears the
        patients and decides who stays: a colleague covering is linked to the event
        first, by its staff or an administrator."""
        async with self._db.transaction() as tx:
            require_may_change(user, await _open_event_with_video(tx, event_id))
            link_id = await self._links.ensure(tx, event_id, "staff", user.id, self_issued=True)
            await audit.record(
                tx, user.actor, "link_copied", event_id=event_id, subject=("staff", user.id)
            )
            return await self._links.url(tx, link_id)

    async def public_link(self, user: StaffUser, event_id: int) -> str:
        async with self._db.transaction() as tx:
            event = await _open_event_with_video(tx, event_id)
            require_may_change(user, event)
            if not event.event_type.public_conference:
                raise Conflict("This event is not a Public Conference.")
            url = await self._links.url(tx, await self._links.ensure(tx, event_id, "public", None))
            await audit.record(tx, user.actor, "public_link_copied", event_id=event_id)
        return url

    async def send_link(
        self, user: StaffUser, event_id: int, kind: PersonKind, person_id: int, channel: Channel
    ) -> None:
        async with self._db.transaction() as tx:
            event = await _open_event_with_video(tx, event_id)
            require_may_change(user, event)
            person = event.person(kind, person_id)
            if person is None:
                raise NotFound(f"This {kind} is not linked to the event.")
            if channel == "sms" and not person.phone:
                raise ValidationError(f"{person.name} has no phone number.", "channel")
            if channel == "email" and not person.email:
                raise ValidationError(f"{person.name} has no email address.", "channel")
            await outbox.enqueue(tx, "join_link", channel, event_id, kind, person_id)
            await audit.record(
                tx,
                user.actor,
                "link_sent",
                event_id=event_id,
                subject=(kind, person_id),
                channel=channel,
            )
        self._messages_queued()

    async def all_links(self, user: StaffUser, event_id: int) -> dict[str, object]:
        """Every join link of an event, for the API; handing them out is audited."""
        async with self._db.transaction() as tx:
            event = await load_event(tx, event_id)
            require_may_change(user, event)
            staff, patients = [], []
            if event.event_type.video_conferencing:
                for person in event.staff:
                    url = await self._links.url_for(tx, event.id, "staff", person.id)
                    staff.append({"id": person.id, "name": person.name, "url": url})
                for patient in event.patients:
                    url = await self._links.url_for(tx, event.id, "patient", patient.id)
                    patients.append({"id": patient.id, "name": patient.name, "url": url})
            public = await self._links.url_for(tx, event.id, "public", None)
            await audit.record(tx, user.actor, "links_listed", event_id=event_id)
        return {"staff": staff, "patients": patients, "public": public}


async def _open_event_with_video(tx: Transaction, event_id: int) -> Event:
    event = await load_event(tx, event_id)
    if event.cancelled:
        raise Conflict("This event is cancelled.")
    if not event.event_type.video_conferencing:
        raise Conflict("This event has no video conferencing.")
    return event
