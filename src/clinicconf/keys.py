"""The application's shared services, on typed keys declared in one place."""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from .accounts import StaffUser
from .conference.conferences import Conferences
from .config import Settings
from .db import Database
from .notify.sender import OutboxSender
from .recording.store import Recordings
from .scheduling import Scheduler
from .throttle import GuessingThrottle

SETTINGS: Final = web.AppKey("settings", Settings)
DATABASE: Final = web.AppKey("database", Database)
SECRET_KEY: Final = web.AppKey("secret_key", bytes)
SCHEDULER: Final = web.AppKey("scheduler", Scheduler)
OUTBOX_SENDER: Final = web.AppKey("outbox_sender", OutboxSender)
TEMPLATES: Final = web.AppKey("templates", jinja2.Environment)
CONFERENCES: Final = web.AppKey("conferences", Conferences)
GUESSING_THROTTLE: Final = web.AppKey("guessing_throttle", GuessingThrottle)
RECORDINGS: Final = web.AppKey("recordings", Recordings)

# Per request, set by the middleware: the signed-in staff member (absent when nobody
# is signed in) and the CSRF token that forms must echo.
USER: Final = web.RequestKey("user", StaffUser)
CSRF_TOKEN: Final = web.RequestKey("csrf_token", str)
