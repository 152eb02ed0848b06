"""Composing finished recordings in the background, one at a time, each in a
process of its own at a lower priority: a composition decodes and encodes video for
minutes, and the live conferences on this server come first. A composition cut short
(the server stopped) is begun again at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Final

from .store import Recordings

log = logging.getLogger(__name__)

# Progress is written to the database at most this often.
PROGRESS_INTERVAL_SECONDS: Final = 1.0
# A composer that reports no progress for this long has hung: it reports every 1 %,
# which for the longest conferences is a minute or two of work.
STALLED_SECONDS: Final = 600.0
_NOT_COMPOSED: Final = "The separate tracks could not be made into one playable file: "


class Composer:
    def __init__(self, store: Recordings) -> None:
        self.store = store
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.store.sweep()
        for recording_id in await self.store.to_compose():
            self._queue.put_nowait(recording_id)
        self._worker = asyncio.create_task(self._work(), name="recording-composer")

    async def finished(self, recording_id: int) -> None:
        """A recording has been written to its end: compose it."""
        await self.store.finished(recording_id)
        self._queue.put_nowait(recording_id)

    async def stopped_early(self, recording_id: int, reason: str) -> None:
        """A recording could not go on (`reason`): compose what was written."""
        await self.store.finished(recording_id, interruption=reason)
        self._queue.put_nowait(recording_id)

    async def _work(self) -> None:
        while True:
            recording_id = await self._queue.get()
            try:
                await self._compose(recording_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("composing recording %d failed", recording_id)
                await self.store.failed(recording_id, _NOT_COMPOSED + str(exc))

    async def _compose(self, recording_id: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clinicconf.recording.compose",
            str(self.store.directory(recording_id)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        # Read all along: a composer with much to say must not block on a full pipe.
        said = asyncio.create_task(process.stderr.read(), name="composer-stderr")
        try:
            result = await self._follow(recording_id, process)
            await process.wait()
            errors = await said
        except TimeoutError:
            process.kill()
            await process.wait()
            await self.store.failed(recording_id, _NOT_COMPOSED + "it stopped making progress.")
            return
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            said.cancel()
            raise
        if process.returncode == 0 and result is not None:
            await self.store.ready(recording_id, result["duration_ms"], result["size_bytes"])
        else:
            reason = errors.decode(errors="replace").strip().splitlines()
            why = reason[-1] if reason else f"the composer exited with {process.returncode}."
            await self.store.failed(recording_id, _NOT_COMPOSED + why)

    async def _follow(
        self, recording_id: int, process: asyncio.subprocess.Process
    ) -> dict[str, int] | None:
        """Read the composer's progress lines until it ends; its result, if it said."""
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        written_at = -PROGRESS_INTERVAL_SECONDS
        result = None
        while raw := await asyncio.wait_for(process.stdout.readline(), STALLED_SECONDS):
            word, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if word == "progress" and loop.time() - written_at >= PROGRESS_INTERVAL_SECONDS:
                written_at = loop.time()
                await self.store.progress(recording_id, float(rest))
            elif word == "done":
                result = json.loads(rest)
        return result

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
