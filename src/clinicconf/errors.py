"""The domain's exceptions. Raised by the core; how each is answered (an HTTP status
and code, a websocket error code) is the web edge's, in one table: web/protocol.py's
`error_answer`."""

from __future__ import annotations


class ClinicConfError(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(ClinicConfError):
    """The request could not be read: malformed JSON, a body too large."""


class AuthenticationRequired(ClinicConfError):
    """Nobody is signed in, or the API token is not (or no longer) valid."""


class PermissionDenied(ClinicConfError):
    """Signed in, but this person's role may not do this."""


class NotFound(ClinicConfError):
    """No such thing, or not one this person may know of."""


class Conflict(ClinicConfError):
    """The request contradicts what is stored: a duplicate email, a cancelled event."""


class ValidationError(ClinicConfError):
    """A value is missing or wrong; `field` names it."""


class Refused(Conflict):
    """An intent the live conference cannot take now; `reason` is the websocket
    protocol's error code for it (docs/lobby-protocol.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ServerBusy(ClinicConfError):
    """The database is held by someone else (another process, a backup) for longer
    than the server waits: nothing was changed, and the request may be sent again."""

    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__("The server is busy. Please try again in a few seconds.")
