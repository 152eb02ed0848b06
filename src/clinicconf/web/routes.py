"""The URL table: every view module's routes, and the static files."""

from __future__ import annotations

from aiohttp import web

from .rendering import STATIC_DIR
from .views import api, auth, directories, events, join, lobby, recordings, scheduler


def add_routes(app: web.Application) -> None:
    for module in (auth, scheduler, events, directories, recordings, join, lobby, api):
        app.add_routes(module.routes)
    app.router.add_static("/static", STATIC_DIR)
