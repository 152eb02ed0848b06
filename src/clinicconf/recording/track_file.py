"""One track's WebM file written live, as recording/files.py lays it out: the media
side of a recording (sfu/recorder.py, bench/compose.py). Apart from files.py so that
what reads a recording's files (the store, the pages) loads no av."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import av
from av.container import OutputContainer

from ..owner_only import create_owner_only_file, owner_only_directory
from ..pictures import impossible_keyframe, vp8_keyframe_size
from .files import TIME_BASE, Kind

# Live writing: no cues written at the end, clusters closed within a second, and
# every packet handed to the operating system as it comes.
_LIVE_OPTIONS: Final = {"live": "1", "cluster_time_limit": "1000", "flush_packets": "1"}
_ENCODERS: Final[dict[Kind, str]] = {"audio": "libopus", "video": "libvpx"}


class UnrecordableFrame(ValueError):
    """What a participant sent cannot be kept as a picture: their track ends there."""


class TrackFile:
    """One track's WebM file, opened at its first frame (a video's keyframe gives
    the picture size the header needs)."""

    def __init__(self, path: Path, kind: Kind) -> None:
        self.path = path
        self.kind = kind
        self._container: OutputContainer | None = None
        self._stream: Any = None
        self.last_pts: int | None = None

    def write(self, data: bytes, pts: int, *, keyframe: bool = True) -> None:
        """Add one encoded frame at `pts` milliseconds; a frame not after the last
        one written is moved just after it (a container's time only goes forward).
        A video keyframe of a size out of bounds raises UnrecordableFrame, and is
        not written."""
        if self.kind == "video" and (why := impossible_keyframe(data)) is not None:
            raise UnrecordableFrame(why)
        if self._container is None:
            self._open(data)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        assert self._container is not None
        self._container.mux(packet)
        self.last_pts = pts

    def _open(self, first: bytes) -> None:
        owner_only_directory(self.path.parent)
        create_owner_only_file(self.path)
        container = av.open(str(self.path), "w", format="webm", options=dict(_LIVE_OPTIONS))
        try:
            if self.kind == "video":
                size = vp8_keyframe_size(first)
                if size is None:
                    raise UnrecordableFrame("a video track must start with a keyframe")
                stream: Any = container.add_stream(_ENCODERS["video"], rate=30)
                stream.width, stream.height = size
            else:
                stream = container.add_stream(_ENCODERS["audio"], rate=48_000, layout="stereo")
            stream.time_base = TIME_BASE
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()
