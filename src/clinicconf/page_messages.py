"""What the server tells a page over its websocket (docs/lobby-protocol.md), declared
once as TypedDicts: the conference, the media server and the web edge build these
messages, and a type checker holds each to its shape. It imports nothing of the
server, so that every layer may import it. The web edge adds `"v"` to each as it
sends it (web/socket.py); what a page may send is web/protocol.py's."""

from __future__ import annotations

from typing import Literal, NotRequired

# typing's own TypedDict is one pydantic cannot read before Python 3.12
# (tests/conference/lobby/test_protocol.py checks what the server sends against these).
from typing_extensions import TypedDict

ParticipantKind = Literal["staff", "patient", "guest"]


# --- answers to what a page sent, and the clock -------------------------------------


class Result(TypedDict):
    type: Literal["result"]
    id: int
    server_time: int


class Error(TypedDict):
    type: Literal["error"]
    # None when the message's own id could not be read.
    id: int | None
    code: str
    message: str


class Time(TypedDict):
    type: Literal["time"]
    server_time: int


# --- the lobby -----------------------------------------------------------------------


class EventSummary(TypedDict):
    title: str
    starts_at: int
    ends_at: int


class Options(TypedDict):
    moderator: bool
    recording: bool
    locked: bool
    waiting_room: bool


class You(TypedDict):
    id: str
    kind: ParticipantKind
    name: str
    host: bool


class SeenParticipant(TypedDict):
    """A participant as one viewer may see them (`anonymous`: `name` is a stand-in)."""

    id: str
    kind: ParticipantKind
    name: str
    anonymous: bool
    active: bool
    invited: bool


class WaitingGuest(TypedDict):
    id: str
    name: str


class ModerationState(TypedDict):
    moderator: bool
    shown: list[str]
    # Only those whose permission is not "audio_video".
    permissions: dict[str, str]


class Welcome(TypedDict):
    type: Literal["welcome"]
    you: You
    event: EventSummary
    options: Options
    started: bool
    moderation: ModerationState
    server_time: int
    participants: list[SeenParticipant]
    waiting: NotRequired[list[WaitingGuest]]  # to a host only


class Presence(TypedDict):
    type: Literal["presence"]
    participant: SeenParticipant


class OptionsChanged(TypedDict):
    type: Literal["options"]
    options: Options


class WaitingRoom(TypedDict):
    type: Literal["waiting_room"]
    event: EventSummary
    server_time: int


class Waiting(TypedDict):
    type: Literal["waiting"]
    guests: list[WaitingGuest]


class Started(TypedDict):
    type: Literal["started"]
    started_at: int


class Cancelled(TypedDict):
    type: Literal["cancelled"]


# --- the conference ------------------------------------------------------------------


class Moderation(ModerationState):
    type: Literal["moderation"]


class IceServer(TypedDict):
    urls: list[str]
    username: NotRequired[str]
    credential: NotRequired[str]


class Offer(TypedDict):
    type: Literal["offer"]
    connection: str
    sdp: str
    # The mid of each kind the page sends on.
    publish: dict[str, str | None]
    ice_servers: list[IceServer]


class Track(TypedDict):
    mid: str
    kind: str
    participant: str
    name: str
    shown: bool


class Tracks(TypedDict):
    type: Literal["tracks"]
    connection: str
    tracks: list[Track]


class MediaClosed(TypedDict):
    type: Literal["media_closed"]
    connection: str
    reason: Literal["elsewhere", "failed"]
    message: str


class RecordingFailed(TypedDict):
    type: Literal["recording_failed"]
    message: str


class Ended(TypedDict):
    type: Literal["ended"]
    by: Literal["host", "time"]


# What the media tells a page about its media connection (conference/media.py's port).
MediaMessage = Offer | Tracks | MediaClosed

ServerMessage = (
    Result
    | Error
    | Time
    | Welcome
    | Presence
    | OptionsChanged
    | WaitingRoom
    | Waiting
    | Started
    | Cancelled
    | Moderation
    | MediaMessage
    | RecordingFailed
    | Ended
)
