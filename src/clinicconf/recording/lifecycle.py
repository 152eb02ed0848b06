"""A conference's recording over the conference's life: started, paused and resumed
as the host's option says, stopped when the conference ends, goes quiet or cannot be
recorded any more, then handed to the composer.

Every change happens under one lock and looks at the wanted state afresh once it
holds it: a host toggling quickly, two hosts at once, or the conference ending while
a recording is being created never leave two recordings, nor one still being written
that nobody's indicator shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Protocol

from ..schedule import Event
from .jobs import Composer
from .store import Attendee

log = logging.getLogger(__name__)


class RecordedMedia(Protocol):
    """What a recording asks of the media it records."""

    def record(self, recording_id: int, directory: Path, broke: Callable[[str], None]) -> None:
        """Write the permitted media into `directory` from now on; `broke` is told
        why, if it cannot go on."""

    def pause_recording(self, paused: bool) -> None: ...

    def stop_recording(self) -> None:
        """Close what is being written (nothing, if nothing is)."""


class ConferenceRecording:
    def __init__(
        self, composer: Composer, media: RecordedMedia, stopped: Callable[[str], None]
    ) -> None:
        self._composer = composer
        self._media = media
        # Told (before anything is saved) when a recording stops by itself, with why.
        self._stopped = stopped
        self._lock = asyncio.Lock()
        # The recording being written (or paused), by id.
        self._current: int | None = None
        self._paused = False
        # Who took part in the current recording, by the id their tracks are named by.
        self._present: dict[str, Attendee] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        """A recording exists (writing or paused)."""
        return self._current is not None

    async def follow(self, event: Event, wanted: bool) -> None:
        """Make the recording on exactly when `wanted`: begun if there is none, else
        paused or resumed."""
        async with self._lock:
            if self._current is None:
                if wanted:
                    await self._start(event)
                return
            self._paused = not wanted
            self._media.pause_recording(self._paused)

    async def _start(self, event: Event) -> None:
        store = self._composer.store
        recording_id = await store.create(event)
        self._current, self._paused = recording_id, False
        self._present = {}
        self._media.record(
            recording_id, store.directory(recording_id), lambda why: self._broke(recording_id, why)
        )

    async def note_present(self, attendees: Iterable[Attendee]) -> None:
        """`attendees` are in the conference's media now: if it is being recorded,
        they took part in the recording."""
        async with self._lock:
            recording_id = self._current
            if recording_id is None or self._paused:
                return
            new = {a.participant: a for a in attendees if a.participant not in self._present}
            if new:
                self._present |= new
                await self._composer.store.note_present(recording_id, list(self._present.values()))

    async def finish(self, event: Event) -> None:
        """The conference is over (or quiet): close the files, and compose."""
        async with self._lock:
            current, self._current = self._current, None
            if current is not None:
                self._media.stop_recording()
                await self._composer.store.link_patients(current, event)
                await self._composer.finished(current)

    def finish_soon(self, event: Event) -> None:
        self._run(self.finish(event), "recording-finish")

    def _broke(self, recording_id: int, reason: str) -> None:
        """From the recorder, on the media path: it cannot go on."""
        if self._current == recording_id:
            self._current = None
            self._media.stop_recording()
            self._stopped(reason)
            self._run(self._stopped_early(recording_id, reason), "recording-broke")

    async def _stopped_early(self, recording_id: int, reason: str) -> None:
        """Keep and compose what was written. The disk that is full may hold the
        database too: what cannot be saved is logged, the conference goes on."""
        try:
            async with self._lock:
                await self._composer.stopped_early(recording_id, reason)
        except Exception:
            log.exception("recording %d stopped early and could not be marked so", recording_id)

    def _run(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, event: Event) -> None:
        """The conference is over for this server: no recording is left being written."""
        await self.finish(event)
        await asyncio.gather(*self._tasks, return_exceptions=True)
