"""A conference's media: one peer connection per person who sends and receives
media, kept in step with the router's table. Whenever the conference's state
changes, `changed()` asks for the table to be applied again: outlets are pointed at
the permitted sources (a change takes effect at once, nobody reconnects), new
m-lines are offered when someone needs more, and each page is told what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiortc import RTCPeerConnection

from ..config import Settings
from ..errors import Refused
from . import ice
from .forward import TranscodingRelay
from .peer import BadAnswer, OutOfTurn, Peer
from .router import Kind, Member, routes

log = logging.getLogger(__name__)

# People sending media at once in one conference: the decoded-frame relay costs a
# VP8 encode per forwarded video, so a 2-core host carries a handful of them.
MAX_MEDIA_PEOPLE: Final = 16


class Page(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class Roster(Protocol):
    """What the room reads of its conference."""

    @property
    def moderated(self) -> bool: ...

    def member(self, participant: str) -> Member:
        """The routing facts of a participant (permission, shown, host)."""

    def label(self, viewer: str, subject: str) -> str:
        """`subject`'s name as `viewer` may see it."""


@dataclass(eq=False)
class _Attendance:
    page: Page
    peer: Peer
    offered: bool = False
    last_tracks: list[dict[str, Any]] | None = None


class Room:
    def __init__(self, roster: Roster, settings: Settings) -> None:
        self._roster = roster
        self._settings = settings
        self._forwarding = TranscodingRelay()
        self._people: dict[str, _Attendance] = {}
        self._dirty = False
        self._applier: asyncio.Task[None] | None = None
        # Peers being closed after a failure, each owned here until done.
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def present(self) -> set[str]:
        return set(self._people)

    # --- pages' intents ----------------------------------------------------------------

    async def join(self, participant: str, page: Page) -> None:
        """Open `page`'s media connection; another page of the same person loses its own."""
        if participant not in self._people and len(self._people) >= MAX_MEDIA_PEOPLE:
            raise Refused("media_full", f"{MAX_MEDIA_PEOPLE} people already send media here.")
        earlier = self._people.pop(participant, None)
        if earlier is not None:
            if earlier.page is not page:
                earlier.page.send(
                    {
                        "type": "media_closed",
                        "reason": "elsewhere",
                        "message": "This conference is open in another window.",
                    }
                )
            await earlier.peer.close()
        pc = RTCPeerConnection(ice.server_configuration(self._settings))
        extras = {"ice_servers": ice.browser_ice_servers(self._settings, participant)}
        peer = Peer(pc, self._forwarding, page.send, extras, self._peer_failed)
        self._people[participant] = _Attendance(page, peer)
        self.changed()

    async def answer(self, participant: str, page: Page, sdp: str) -> None:
        attendance = self._attendance(participant, page)
        try:
            await attendance.peer.answer(sdp)
        except OutOfTurn as exc:
            raise Refused("out_of_turn", str(exc)) from None
        except BadAnswer as exc:
            await self._drop(participant, attendance)
            raise Refused("bad_sdp", f"{exc} The media connection is closed.") from None
        self.changed()

    async def leave(self, participant: str, page: Page) -> None:
        """The page has gone (or left): its media stops everywhere."""
        attendance = self._people.get(participant)
        if attendance is not None and attendance.page is page:
            await self._drop(participant, attendance)

    def _attendance(self, participant: str, page: Page) -> _Attendance:
        attendance = self._people.get(participant)
        if attendance is None or attendance.page is not page:
            raise Refused("no_media", "This page has no media connection: send join_media.")
        return attendance

    async def _drop(self, participant: str, attendance: _Attendance) -> None:
        if self._people.get(participant) is attendance:
            del self._people[participant]
        await attendance.peer.close()
        self.changed()

    def _peer_failed(self, peer: Peer, message: str) -> None:
        for participant, attendance in list(self._people.items()):
            if attendance.peer is peer:
                attendance.page.send(
                    {"type": "media_closed", "reason": "failed", "message": message}
                )
                task = asyncio.create_task(self._drop(participant, attendance), name="peer-drop")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    # --- applying the router's table ---------------------------------------------------

    def changed(self) -> None:
        """The conference's state changed: apply the table again, soon and once."""
        self._dirty = True
        if self._applier is None or self._applier.done():
            self._applier = asyncio.create_task(self._apply_while_dirty(), name="room-apply")

    async def _apply_while_dirty(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._apply()
            except Exception:
                log.exception("applying the forwarding table failed")

    async def _apply(self) -> None:
        members = [self._roster.member(participant) for participant in self._people]
        table = routes(members, self._roster.moderated)
        hosts = {m.id for m in members if m.host}
        for subscriber, attendance in list(self._people.items()):
            peer = attendance.peer
            wanted = {(r.publisher, r.kind) for r in table if r.subscriber == subscriber}
            needs_offer = not attendance.offered
            for slot in peer.slots:
                if slot.publisher is not None and slot.publisher not in self._people:
                    slot.publisher = None  # free for whoever comes next
                if (slot.publisher, slot.kind) not in wanted:
                    slot.outlet.connect(None)
            for publisher, kind in sorted(wanted):
                slot, new = peer.slot_for(kind, publisher)
                needs_offer = needs_offer or new
                slot.outlet.connect(self._people[publisher].peer.sources.get(kind))
            if needs_offer and not peer.closed:
                attendance.offered = True
                await peer.offer()
            self._tell_tracks(subscriber, attendance, wanted, show_all=subscriber in hosts)

    def _tell_tracks(
        self,
        subscriber: str,
        attendance: _Attendance,
        wanted: set[tuple[str, Kind]],
        show_all: bool,
    ) -> None:
        """Send the page what it receives now, if that changed: only negotiated
        m-lines whose publisher is sending."""
        tracks = []
        for slot in attendance.peer.slots:
            mid, publisher = slot.transceiver.mid, slot.publisher
            if mid is None or publisher is None or (publisher, slot.kind) not in wanted:
                continue
            if slot.kind not in self._people[publisher].peer.sources:
                continue
            member = self._roster.member(publisher)
            tracks.append(
                {
                    "mid": mid,
                    "kind": slot.kind,
                    "participant": publisher,
                    "name": self._roster.label(subscriber, publisher),
                    # Only a host receives what is not on everyone's screen.
                    "shown": member.shown if show_all and self._roster.moderated else True,
                }
            )
        if tracks != attendance.last_tracks:
            attendance.last_tracks = tracks
            attendance.page.send({"type": "tracks", "tracks": tracks})

    async def close(self) -> None:
        if self._applier is not None:
            self._applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._applier
        people, self._people = list(self._people.values()), {}
        for attendance in people:
            await attendance.peer.close()
        for task in list(self._closing):
            await task


RoomFactory = Callable[[Roster], Room]
