"""The application factory, used by `serve` and by the tests alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import keys
from .conference.conferences import Conferences
from .conference.media import ConferenceMedia, MediaRoster
from .config import Settings
from .db import Database
from .links import JoinLinks
from .notify.sender import OutboxSender
from .owner_only import owner_only_directory
from .recording.jobs import Composer
from .recording.store import Recordings
from .scheduling import Scheduler
from .scheduling.records import ScheduleRecords
from .security import load_or_create_secret_key
from .sfu import ice
from .sfu.passthrough import verify_aiortc
from .sfu.room import Room
from .throttle import GuessingThrottle
from .web import middleware
from .web.rendering import create_environment
from .web.routes import add_routes

log = logging.getLogger(__name__)

# Requests are small forms and JSON documents; anything larger is refused early.
MAX_REQUEST_BYTES = 256 * 1024


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[
            middleware.forwarded_client,
            middleware.errors,
            middleware.authentication,
            middleware.csrf,
        ],
    )
    app[keys.SETTINGS] = settings
    app[keys.TEMPLATES] = create_environment(settings.time_zone)
    app[keys.GUESSING_THROTTLE] = GuessingThrottle()
    app.on_response_prepare.append(middleware.add_security_headers)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_services)
    # Open pages' sockets are closed before the server waits for its handlers to end.
    app.on_shutdown.append(_close_conferences)
    add_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    # Health information: the server's folders are its own only, also when they
    # were there before.
    owner_only_directory(settings.data_dir)
    owner_only_directory(settings.recordings_dir)
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        app[keys.DATABASE] = db
        app[keys.SECRET_KEY] = load_or_create_secret_key(settings.secret_key_path)
        yield
    finally:
        await db.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    """The outbox sender, the live conferences, and the Scheduler that tells both."""
    settings, db = app[keys.SETTINGS], app[keys.DATABASE]
    links = JoinLinks(app[keys.SECRET_KEY], settings.public_base_url)
    sender = OutboxSender(db, settings, links, ScheduleRecords(db))
    ice.install(settings)
    if settings.forwarding == "packets":
        await verify_aiortc()  # refuse to start rather than forward nothing

    recordings = Recordings(db, settings.recordings_dir)
    composer = Composer(recordings)

    def new_media(roster: MediaRoster) -> ConferenceMedia:
        """A conference's media: an aiortc room here, recording through the composer."""
        return Room(roster, settings, composer)

    conferences = Conferences(db, settings.presence_grace_seconds, new_media)
    app[keys.RECORDINGS] = recordings
    app[keys.OUTBOX_SENDER] = sender
    app[keys.CONFERENCES] = conferences
    app[keys.SCHEDULER] = Scheduler(
        db,
        links,
        settings.phone_region,
        messages_queued=sender.wake,
        event_changed=conferences.event_changed,
    )
    sender.start()
    await composer.start()
    yield
    await composer.close()
    await sender.close()


async def _close_conferences(app: web.Application) -> None:
    await app[keys.CONFERENCES].close()
