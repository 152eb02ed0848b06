"""The moderator's vocabulary, in the conference's own terms: the media kinds, what a
participant may use, and a participant as the forwarding rules see them. The core
decides with it; the pure router (`sfu/router.py`) and the media apply it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")


class Permission(StrEnum):
    """What the moderator lets a participant use."""

    AUDIO_VIDEO = "audio_video"
    AUDIO = "audio"
    VIDEO = "video"
    NONE = "none"

    def allows(self, kind: Kind) -> bool:
        return self is Permission.AUDIO_VIDEO or self.value == kind


@dataclass(frozen=True)
class Member:
    """A participant who sends and receives media now."""

    id: str
    host: bool
    permission: Permission = Permission.AUDIO_VIDEO
    # On everyone's screen in moderator mode.
    shown: bool = False
