"""Why a page's socket closed, as the page is told it: a websocket close code
(docs/lobby-protocol.md lists them; web/static/lobby.js explains those a person must
read). The conference gives its reasons (`Closing`); this table is the only place
that knows their codes."""

from __future__ import annotations

from typing import Final

from ..conference.identity import Closing

CLOSE_CODES: Final[dict[Closing, int]] = {
    Closing.EVENT_CHANGED: 4000,
    Closing.CANCELLED: 4410,
    Closing.ENDED: 4411,
    Closing.FULL: 4429,
    Closing.WAITING_ROOM_FULL: 4429,
    Closing.TOO_MANY_PAGES: 4428,
    Closing.LOCKED: 4423,
    Closing.TURNED_AWAY: 4431,
    Closing.REMOVED: 4430,
    Closing.SHUTTING_DOWN: 1001,  # going away
}
# Sent as the close frame's text: what a developer reads in the browser's console.
_TEXTS: Final[dict[Closing, str]] = {
    Closing.EVENT_CHANGED: "event changed",
    Closing.WAITING_ROOM_FULL: "waiting room full",
    Closing.TOO_MANY_PAGES: "too many pages",
    Closing.TURNED_AWAY: "turned away",
    Closing.SHUTTING_DOWN: "server shutting down",
}


def close_code(why: Closing) -> int:
    return CLOSE_CODES[why]


def close_text(why: Closing) -> str:
    return _TEXTS.get(why, why.value)
