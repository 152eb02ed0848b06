"""A recording's files on disk: how the recorder writes them and the composer finds them.

A recording is a directory under the data directory's `recordings/`, named by its id:

- `tracks/<participant>-<kind>.webm`: one participant's video (VP8) or sound (Opus)
  as it was received, never decoded or encoded again. Timestamps are milliseconds
  from the recording's start. Written live (no seeking back to the start, a cluster
  at least every second, each packet flushed): a crash leaves a file that plays up
  to its last second, and a power cut one that plays up to the recorder's last sync
  to the disk (sfu/recorder.py: every two seconds).
- `timeline.jsonl`: one JSON line per change of what is recorded:
  `{"t": ms, "recording": bool, "video": [participant, ...], "audio": [...]}`; the
  last line is `{"t": ms, "end": true}` when the recording ended cleanly. A track
  that ended early because what it carried could not be recorded (the recorder) or
  composed (the composer) is noted `{"t": ms, "damaged": participant, "kind": kind,
  "why": text}`; from then on the recorder records it no more, and the composer
  shows none of it.
- `conference.webm`: the one playable file composed after the conference.

Every file and folder is its owner's only (owner_only.py). A video's keyframe
claiming a picture size out of bounds (pictures.py: 0x0, or VP8's 16383x16383)
ends that track, in the recorder and in the composer alike.
"""

from __future__ import annotations

import fractions
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ..owner_only import FILE_MODE

Kind = Literal["audio", "video"]
TIME_BASE: Final = fractions.Fraction(1, 1000)
TRACKS: Final = "tracks"
TIMELINE: Final = "timeline.jsonl"
COMPOSED: Final = "conference.webm"


def track_path(directory: Path, participant: str, kind: Kind) -> Path:
    return directory / TRACKS / f"{participant}-{kind}.webm"


def track_of(path: Path) -> tuple[str, Kind] | None:
    """The participant and kind a track file holds, from its name."""
    participant, _, kind = path.stem.rpartition("-")
    if path.suffix != ".webm" or not participant or kind not in ("audio", "video"):
        return None
    return participant, "audio" if kind == "audio" else "video"


@dataclass(frozen=True)
class Timeline:
    """The recording's `timeline.jsonl`, appended to and flushed line by line."""

    path: Path

    def append(self, entry: dict[str, Any]) -> None:
        """Append one entry; handed to the operating system at once (the recorder syncs
        it to the disk with the tracks)."""
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        with open(descriptor, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry, separators=(",", ":")) + "\n")


def damage_note(participant: str, kind: Kind, why: str) -> dict[str, object]:
    """The timeline's entry (less its time) saying that a track ends, and why."""
    return {"damaged": participant, "kind": kind, "why": why}


def read_timeline(directory: Path) -> list[dict[str, Any]]:
    """The timeline's entries in order; a last line cut short by a crash is skipped."""
    path = directory / TIMELINE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return entries


@dataclass(frozen=True)
class DamagedTrack:
    """A track that ended early because what it carried could not be kept."""

    participant: str
    kind: Kind
    at_ms: int  # from the recording's start
    why: str  # e.g. "a keyframe claims a 0x0 picture"


def damaged_tracks(directory: Path) -> list[DamagedTrack]:
    """The recording's damaged tracks, each once (when it was first noted), in order."""
    found: dict[tuple[str, str], DamagedTrack] = {}
    for entry in read_timeline(directory):
        participant, kind = entry.get("damaged"), entry.get("kind")
        if isinstance(participant, str) and kind in ("audio", "video"):
            noted = DamagedTrack(participant, kind, int(entry["t"]), str(entry.get("why", "")))
            found.setdefault((participant, kind), noted)
    return list(found.values())


def track_files(directory: Path) -> list[tuple[Path, str, Kind]]:
    """The track files of a recording, with their participant and kind, by name."""
    found = []
    for path in sorted((directory / TRACKS).glob("*.webm")):
        track = track_of(path)
        if track is not None:
            found.append((path, *track))
    return found
