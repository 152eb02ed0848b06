"""A conference's media on aiortc (the core's port, `conference/media.py`): one peer
connection per person who sends and receives media, kept in step with the router's
table, and the conference's recording. Whenever the conference's decision changes,
`changed()` brings its lineup and the table is applied again (as it is when someone
joins or leaves the media): outlets are pointed at the
permitted sources (a change takes effect at once, nobody reconnects), new m-lines
are offered when someone needs more, and each page is told what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiortc import RTCPeerConnection

from ..conference.media import Lineup, MediaRoster
from ..config import Settings
from ..errors import Refused
from ..moderation import Kind, Member
from ..page_messages import MediaClosed, Tracks
from ..page_messages import Track as TrackTold
from ..recording.jobs import Composer
from ..recording.lifecycle import ConferenceRecording
from ..recording.store import Attendee
from ..schedule import Event
from . import ice
from .forward import Forwarding, TranscodingRelay
from .passthrough import PacketForwarding
from .passthrough.source import PacketSource
from .peer import BadAnswer, OutOfTurn, Peer
from .recorder import Recorder, Track
from .router import recorded, routes

log = logging.getLogger(__name__)
# aiortc and aioice log SDPs and candidate pairs (participants' IP addresses, ICE
# passwords) at debug and info level: keep them out of the server's log.
for _chatty in ("aiortc", "aioice"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)

# Public guests sending media at once in one conference: a bound on what one public
# link can bring in. The staff and patients of the event are never refused.
MAX_MEDIA_GUESTS: Final = 12


@dataclass(eq=False)
class _Attendance:
    page: str
    peer: Peer
    offered: bool = False
    last_tracks: list[TrackTold] | None = None


class Room:
    def __init__(self, roster: MediaRoster, settings: Settings, composer: Composer) -> None:
        self._roster = roster
        self._settings = settings
        self._forwarding: Forwarding = (
            TranscodingRelay()
            if settings.forwarding == "transcode"
            else PacketForwarding(settings.max_video_bitrate)
        )
        self._people: dict[str, _Attendance] = {}
        self._lineup = Lineup()
        self._dirty = False
        self._applier: asyncio.Task[None] | None = None
        # Peers being closed, each in a task owned here until done: the page's handler
        # that dropped it may itself be cancelled meanwhile (at shutdown).
        self._closing: set[asyncio.Task[None]] = set()
        self._guests: set[str] = set()
        self._recorder: Recorder | None = None
        self._recording = ConferenceRecording(composer, self, roster.recording_stopped)
        self._closed = False

    @property
    def present(self) -> set[str]:
        return set(self._people)

    # --- recording ---------------------------------------------------------------------

    @property
    def can_record(self) -> bool:
        """Recording writes packets as received: decoded-frame forwarding has none."""
        return isinstance(self._forwarding, PacketForwarding)

    async def follow_recording(
        self, event: Event, wanted: bool, attendees: Iterable[Attendee]
    ) -> None:
        await self._recording.follow(event, wanted)
        await self._recording.note_present(a for a in attendees if a.participant in self._people)

    def finish_recording_soon(self, event: Event) -> None:
        if self._recording.active:
            self._recording.finish_soon(event)

    def record(self, recording_id: int, directory: Path, broke: Callable[[str], None]) -> None:
        self.stop_recording()
        self._recorder = Recorder(recording_id, directory, broke)
        self._reroute()

    def pause_recording(self, paused: bool) -> None:
        if self._recorder is not None:
            self._recorder.pause(paused)
        self._reroute()

    def stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()
        self._reroute()

    # --- pages' intents ----------------------------------------------------------------

    async def join(self, participant: str, page: str, *, guest: bool) -> None:
        """Open `page`'s media connection; another page of the same person loses its own."""
        if self._closed:
            raise Refused("ended", "The conference has ended.")
        guests_in = self._guests & set(self._people) - {participant}
        if guest and len(guests_in) >= MAX_MEDIA_GUESTS:
            raise Refused("media_full", f"{MAX_MEDIA_GUESTS} guests already take part here.")
        pc = RTCPeerConnection(ice.server_configuration(self._settings))
        ice_servers = ice.browser_ice_servers(self._settings, participant)
        peer = Peer(
            pc,
            self._forwarding,
            functools.partial(self._roster.send, page),
            ice_servers,
            self._peer_failed,
            self._settings.ice_address_list,
        )
        # In its place before any wait, so that two windows joining at once each
        # replace the other's peer rather than both keeping one.
        earlier = self._people.get(participant)
        self._people[participant] = _Attendance(page, peer)
        if guest:
            self._guests.add(participant)
        self._reroute()
        if earlier is not None:
            if earlier.page != page:
                self._roster.send(
                    earlier.page,
                    MediaClosed(
                        type="media_closed",
                        connection=earlier.peer.id,
                        reason="elsewhere",
                        message="This conference is open in another window.",
                    ),
                )
            await asyncio.shield(self._drop(participant, earlier))

    async def answer(self, participant: str, page: str, connection: str, sdp: str) -> None:
        attendance = self._attendance(participant, page)
        if attendance.peer.id != connection:
            raise Refused("stale", "That offer was for an earlier media connection.")
        try:
            await attendance.peer.answer(sdp)
        except OutOfTurn as exc:
            raise Refused("out_of_turn", str(exc)) from None
        except BadAnswer as exc:
            await asyncio.shield(self._drop(participant, attendance))
            raise Refused("bad_sdp", f"{exc} The media connection is closed.") from None
        self._reroute()

    async def leave(self, participant: str, page: str) -> None:
        """The page has gone (or left): its media stops everywhere."""
        attendance = self._people.get(participant)
        if attendance is not None and attendance.page == page:
            await asyncio.shield(self._drop(participant, attendance))

    def remove(self, participant: str) -> None:
        """The person is no longer in the conference (taken off the event)."""
        attendance = self._people.get(participant)
        if attendance is not None:
            self._drop(participant, attendance)

    def _attendance(self, participant: str, page: str) -> _Attendance:
        attendance = self._people.get(participant)
        if attendance is None or attendance.page != page:
            raise Refused("no_media", "This page has no media connection: send join_media.")
        return attendance

    def _drop(self, participant: str, attendance: _Attendance) -> asyncio.Task[None]:
        """The peer is out of the room at once; its closing runs in a task of its own."""
        if self._people.get(participant) is attendance:
            del self._people[participant]
        closing = asyncio.create_task(attendance.peer.close(), name="peer-close")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        self._reroute()
        return closing

    def _peer_failed(self, peer: Peer, message: str) -> None:
        for participant, attendance in list(self._people.items()):
            if attendance.peer is peer:
                self._roster.send(
                    attendance.page,
                    MediaClosed(
                        type="media_closed", connection=peer.id, reason="failed", message=message
                    ),
                )
                self._drop(participant, attendance)

    # --- applying the router's table ---------------------------------------------------

    def changed(self, lineup: Lineup) -> None:
        """The conference's decision changed: apply it, soon and once."""
        self._lineup = lineup
        self._reroute()

    def _reroute(self) -> None:
        """Who is here, or what they send, changed: apply the table again, soon and once."""
        if self._closed:
            return
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
        """Route first, for everyone at once (a moderator's change takes effect
        before any page is asked to renegotiate), then make the offers needed."""
        lineup = self._lineup
        # Only those the conference still counts in (one it has let go of is leaving).
        people = {
            p: a for p, a in self._people.items() if not a.peer.closed and p in lineup.members
        }
        members = [lineup.members[participant] for participant in people]
        table = routes(members, lineup.moderated)
        hosts = {m.id for m in members if m.host}
        wanted: dict[str, set[tuple[str, Kind]]] = {p: set() for p in people}
        for route in table:
            wanted[route.subscriber].add((route.publisher, route.kind))
        offers = [
            self._route(subscriber, attendance, wanted[subscriber], people)
            for subscriber, attendance in people.items()
        ]
        if self._recorder is not None:
            self._recorder.route(self._recorded(members, lineup.moderated, people))
        await asyncio.gather(
            *(self._offer(a) for a, needed in zip(people.values(), offers, strict=True) if needed)
        )
        for subscriber, attendance in people.items():
            if self._people.get(subscriber) is attendance:  # still here after the offers
                self._tell_tracks(subscriber, attendance, wanted[subscriber], subscriber in hosts)

    def _route(
        self,
        subscriber: str,
        attendance: _Attendance,
        wanted: set[tuple[str, Kind]],
        people: dict[str, _Attendance],
    ) -> bool:
        """Point the subscriber's outlets at what it may receive; True when it needs
        an offer (its first, or new m-lines)."""
        peer = attendance.peer
        needs_offer = not attendance.offered
        for slot in peer.slots:
            if slot.publisher is not None and slot.publisher not in people:
                slot.publisher = None  # free for whoever comes next
            if (slot.publisher, slot.kind) not in wanted:
                slot.outlet.connect(None)
        for publisher, kind in sorted(wanted):
            slot, new = peer.slot_for(kind, publisher)
            needs_offer = needs_offer or new
            slot.outlet.connect(people[publisher].peer.sources.get(kind))
        return needs_offer

    @staticmethod
    def _recorded(
        members: list[Member], moderated: bool, people: dict[str, _Attendance]
    ) -> dict[Track, PacketSource]:
        """The permitted tracks being sent now, each with its source."""
        sources = {}
        for publisher, kind in recorded(members, moderated):
            source = people[publisher].peer.sources.get(kind)
            if isinstance(source, PacketSource):
                sources[publisher, kind] = source
        return sources

    @staticmethod
    async def _offer(attendance: _Attendance) -> None:
        attendance.offered = True
        await attendance.peer.offer()

    def _tell_tracks(
        self,
        subscriber: str,
        attendance: _Attendance,
        wanted: set[tuple[str, Kind]],
        show_all: bool,
    ) -> None:
        """Send the page what it receives now, if that changed: only negotiated
        m-lines whose publisher is sending."""
        tracks: list[TrackTold] = []
        for slot in attendance.peer.slots:
            mid, publisher = slot.transceiver.mid, slot.publisher
            if mid is None or publisher is None or (publisher, slot.kind) not in wanted:
                continue
            sender = self._people.get(publisher)
            if sender is None or slot.kind not in sender.peer.sources:
                continue  # gone meanwhile, or not sending yet
            lineup = self._lineup
            tracks.append(
                TrackTold(
                    mid=mid,
                    kind=slot.kind,
                    participant=publisher,
                    name=lineup.label(subscriber, publisher),
                    # Only a host receives what is not on everyone's screen.
                    shown=lineup.members[publisher].shown
                    if show_all and lineup.moderated
                    else True,
                )
            )
        if tracks != attendance.last_tracks:
            attendance.last_tracks = tracks
            self._roster.send(
                attendance.page,
                Tracks(type="tracks", connection=attendance.peer.id, tracks=tracks),
            )

    async def close(self, event: Event) -> None:
        """The conference is over for this server: its recording finished (and handed
        to the composer), every peer closed."""
        await self._recording.close(event)
        self._closed = True
        self.stop_recording()
        for participant, attendance in list(self._people.items()):
            self._drop(participant, attendance)
        if self._applier is not None:
            self._applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._applier
        await asyncio.gather(*self._closing)
