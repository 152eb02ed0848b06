"""One conference's rules: the host's intents (options, access, letting in, turning
away, removing, starting, moderating, ending, opening again) and the conference's
course from its start to its end, on the `Gathering` of its people and pages
(gathering.py). Each intent is checked (only a host may), written to the audit log
before it is applied, saved, and told to every page as its holder may see it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Final, Literal

from .. import audit
from ..db import Database, utc_now
from ..errors import PermissionDenied, Refused
from ..moderation import Permission
from ..page_messages import Ended, OptionsChanged, Started
from ..schedule import Event
from . import visibility
from .admission import Knock
from .gathering import Gathering
from .identity import Closing, Identity
from .media import MediaFactory
from .persistence import ConferenceStates, Slot

CANNOT_RECORD: Final = (
    "This server cannot record: it is set to forward decoded pictures"
    ' (forwarding = "transcode"). Ask its administrator to set forwarding = "packets".'
)


class Conference(Gathering):
    def __init__(
        self,
        event: Event,
        db: Database,
        grace_seconds: float,
        media: MediaFactory,
        states: ConferenceStates,
        quiet: Callable[[Conference], None] = lambda conference: None,
    ) -> None:
        # The conference ends at the event's end, which the clinic may move meanwhile.
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[None] | None = None
        # Ending and opening again, one at a time: a conference is never opened again
        # while the end is still closing its media.
        self._ending_or_opening = asyncio.Lock()
        super().__init__(event, db, grace_seconds, media, states, lambda _: quiet(self))

    def invite(self, event: Event) -> None:
        super().invite(event)
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()

    async def _restore(self) -> None:
        await super()._restore()
        if self.started_at is not None and self.ended_by is None:
            self._schedule_end()
            await self._follow_recording()

    # --- the host's intents ------------------------------------------------------------

    async def set_options(self, identity: Identity, *, moderator: bool, recording: bool) -> None:
        """Before the start, what the conference will start with; during it, moderator
        mode on or off, and the recording paused or resumed."""
        self._require_host(identity)
        options = replace(self.options, moderator=moderator, recording=recording)
        if options == self.options:
            return
        if options.recording and not self.room.can_record:
            raise Refused("cannot_record", CANNOT_RECORD)
        # Each host's change is written to the audit log before it is made: a database
        # held by someone else refuses it (busy) with nothing changed.
        await self._audit(identity.actor, "options_changed", **vars(options))
        self.options = options
        self._saver.state_changed()
        if self.started_at is not None:
            # Paused before anyone's indicator says so.
            await self._follow_recording()
        self._audience.send_all(OptionsChanged(type="options", options=self.options.for_pages()))
        if self.started_at is not None:
            self._moderation_changed()

    async def set_access(self, identity: Identity, *, locked: bool, waiting_room: bool) -> None:
        """Who may come in on the public link: nobody new (locked), or each guest let
        in by a host (waiting room). Turning the waiting room off lets in whoever
        waits, unless the conference is locked."""
        self._require_host(identity)
        options = replace(self.options, locked=locked, waiting_room=waiting_room)
        if options == self.options:
            return
        await self._audit(
            identity.actor, "access_changed", locked=locked, waiting_room=waiting_room
        )
        self.options = options
        self._saver.state_changed()
        self._audience.send_all(OptionsChanged(type="options", options=options.for_pages()))
        if not waiting_room and not locked:
            # Not those who wait because a removed guest came from their address: a
            # host lets them in one by one, having looked.
            await self._admit(identity, self._admission.waiting_from_unbarred_addresses())

    async def let_in(self, identity: Identity, knock_id: str | None) -> None:
        """Let in one waiting guest, or (None) everyone waiting."""
        self._require_host(identity)
        await self._admit(identity, self._admission.knocks_named(knock_id))

    async def _admit(self, identity: Identity, knocks: list[Knock]) -> None:
        for knock in knocks:
            if not self._admission.is_waiting(knock):
                continue  # its page closed, or another host decided first
            await self._audit(identity.actor, "guest_let_in", name=knock.connection.identity.name)
            # Taken off the waiting list and in, with no await in between: a page that
            # closes meanwhile is gone from one or the other when it leaves.
            if not self._admission.let_in_now(knock):
                continue
            await self._enter(knock.connection, knock.address)
        self._tell_hosts_who_waits()

    async def turn_away(self, identity: Identity, knock_id: str | None) -> None:
        """Turn away one waiting guest, or (None) everyone waiting: for the rest of
        the event, on that browser."""
        self._require_host(identity)
        turned_away = []
        for knock in self._admission.knocks_named(knock_id):
            if not self._admission.is_waiting(knock):
                continue  # its page closed, or another host decided first
            guest = knock.connection.identity
            await self._audit(identity.actor, "guest_turned_away", name=guest.name)
            if not self._admission.take(knock):
                continue
            self._admission.bar(guest.key, Closing.TURNED_AWAY)
            self._save_person(guest.key)
            turned_away.append(knock)
        self._admission.forget_guests()
        self._tell_hosts_who_waits()
        await asyncio.gather(*(k.connection.close(Closing.TURNED_AWAY) for k in turned_away))

    async def remove(self, identity: Identity, participant_id: str) -> None:
        """Remove someone who is not a host: their pages close, and they cannot come
        back during the event (a guest on that browser; newcomers from their address
        wait to be let in)."""
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        if participant.identity.is_host:
            raise Refused("cannot_remove_host", "A staff member of the event cannot be removed.")
        await self._audit(identity.actor, "participant_removed", participant=participant_id)
        address = participant.address if participant.identity.kind == "guest" else None
        self._admission.bar(participant.identity.key, Closing.REMOVED, address)
        self._save_person(participant.identity.key, barred_address=address)
        self._admission.forget_guests()
        # Their pages close before anything else waits on the database.
        connections = list(participant.connections)
        await asyncio.gather(*(c.close(Closing.REMOVED) for c in connections))
        for connection in connections:
            await self.leave(connection, at_once=True)

    async def start(self, identity: Identity) -> None:
        self._require_host(identity)
        if self.started_at is not None:
            raise Refused("already_started", "The conference has started already.")
        await self._audit(identity.actor, "conference_started", **vars(self.options))
        if self.started_at is not None:  # another host, meanwhile
            return
        self.started_at = utc_now()
        self._saver.state_changed()
        self._audience.send_all(
            Started(type="started", started_at=visibility.epoch_ms(self.started_at))
        )
        self._audience.moderation(self.options.moderator)
        self._schedule_end()
        await self._follow_recording()

    async def set_shown(self, identity: Identity, participant_id: str, shown: bool) -> None:
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        if participant.shown == shown:
            return
        await self._audit(identity.actor, "shown_changed", participant=participant_id, shown=shown)
        participant.shown = shown
        self._save_person(participant.identity.key)
        self._moderation_changed()

    async def set_permission(self, identity: Identity, participant_id: str, value: str) -> None:
        self._require_host(identity)
        participant = self._presence.by_public_id(participant_id)
        try:
            permission = Permission(value)
        except ValueError:
            choices = ", ".join(p.value for p in Permission)
            raise Refused("bad_permission", f"permission: one of {choices}.") from None
        if participant.permission is permission:
            return
        await self._audit(
            identity.actor, "permission_changed", participant=participant_id, permission=value
        )
        participant.permission = permission
        self._save_person(participant.identity.key)
        self._moderation_changed()

    # --- its end, and opening again ----------------------------------------------------

    async def end(self, identity: Identity) -> None:
        """The host ends the conference for everyone."""
        self._require_host(identity)
        await self._audit(identity.actor, "conference_ended", by="host")
        await self._end("host")

    def _schedule_end(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
        remaining = (self.event.end - utc_now()).total_seconds()
        self._end_timer = asyncio.get_running_loop().call_later(
            max(0.0, remaining), self._time_is_up
        )

    def _time_is_up(self) -> None:
        self._end_timer = None
        self._ending = asyncio.create_task(self._end_by_time(), name="conference-end")

    async def _end_by_time(self) -> None:
        await self._audit(audit.SYSTEM, "conference_ended", by="time")
        await self._end("time")

    async def _end(self, by: Literal["host", "time"]) -> None:
        async with self._ending_or_opening:
            if self.ended_by is not None:
                return
            self.ended_by = by
            self._ended_slot = (self.event.start, self.event.end)
            self._saver.state_changed()
            await self.shut()
            await self.close_pages(Closing.ENDED, Ended(type="ended", by=by))

    async def reopen(self, identity: Identity) -> None:
        """A host opens the ended conference again while its event's time lasts (an
        "End Conference for Everyone" pressed by mistake), as it was before its start:
        the pages join it anew, and a host starts it again."""
        self._require_host(identity)
        await self._restored()
        async with self._ending_or_opening:
            if self.ended_by is None:
                raise Refused("not_ended", "The conference has not ended.")
            if self.event.end <= utc_now():
                raise Refused("over", "The event's time is over: reschedule it to meet again.")
            await self._audit(identity.actor, "conference_reopened", by="host")
            self._open_again()

    async def rescheduled(self) -> None:
        """The event has changed: ended in other times than the event has now, and
        those not passed, the conference opens again (the new invitations work)."""
        await self._restored()
        async with self._ending_or_opening:
            if self.ended_by is not None and _moved_ahead(self._ended_slot, self.event):
                await self._audit(audit.SYSTEM, "conference_reopened", by="rescheduled")
                self._open_again()

    def _open_again(self) -> None:
        """As before the start, with the host's options, the moderator's choices and
        who is kept out as they were; the ended one's media and recording are closed."""
        self.started_at = self.ended_by = self._ended_slot = None
        self._shut = False
        self.room = self._new_media(self._roster)
        self._saver.state_changed()

    async def shut(self) -> None:
        """No more grace periods, no more media: the conference is over for this server."""
        self._shut = True
        if self._end_timer is not None:
            self._end_timer.cancel()
        ending, self._ending = self._ending, None
        if ending is not None and ending is not asyncio.current_task():
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ending
        await self.room.close(self.event)
        # Who was about to come back will not: gone now, and the conference, once
        # nobody is in it, no longer kept.
        for participant in await self._presence.end_graces():
            await self._gone(participant)
        # Whatever was not written yet is, before the server goes.
        with contextlib.suppress(Exception):
            await self._restoring
        await self._saver.finish()

    @staticmethod
    def _require_host(identity: Identity) -> None:
        if not identity.is_host:
            raise PermissionDenied("Only a staff member of the event can do this.")


def _moved_ahead(ended_slot: Slot | None, event: Event) -> bool:
    """The event has times other than those its conference ended in (unknown: ended
    before they were kept), and they have not passed."""
    return ended_slot != (event.start, event.end) and event.end > utc_now()
