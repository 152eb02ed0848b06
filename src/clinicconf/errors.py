"""The domain's exceptions. Raised by the core, mapped to HTML pages, JSON errors
or websocket messages at the edges (web/middleware.py)."""

from __future__ import annotations

from typing import ClassVar


class ClinicConfError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(ClinicConfError):
    """The request could not be read: malformed JSON, a body too large."""


class AuthenticationRequired(ClinicConfError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(ClinicConfError):
    status = 403
    code = "forbidden"


class NotFound(ClinicConfError):
    status = 404
    code = "not_found"


class Conflict(ClinicConfError):
    """The request contradicts what is stored: a duplicate email, a cancelled event."""

    status = 409
    code = "conflict"


class ValidationError(ClinicConfError):
    """A value is missing or wrong; `field` names it."""

    status = 422
    code = "invalid"


class Refused(Conflict):
    """An intent the live conference cannot take now; `reason` is the websocket
    protocol's error code for it (docs/lobby-protocol.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ServerBusy(ClinicConfError):
    """The database is held by someone else (another process, a backup) for longer
    than the server waits: nothing was changed, and the request may be sent again."""

    status = 503
    code = "busy"
    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__("The server is busy. Please try again in a few seconds.")
