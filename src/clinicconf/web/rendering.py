"""Rendering pages with jinja2: one environment, autoescaped, and the request's
user and CSRF token in every template."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from .. import keys
from ..timespan import describe_span

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"


def create_environment(time_zone: str) -> jinja2.Environment:
    zone = ZoneInfo(time_zone)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )

    def local(moment: datetime, fmt: str = "%a %d %b %Y, %H:%M") -> str:
        """A stored UTC time as the clinic reads it."""
        return moment.astimezone(zone).strftime(fmt)

    env.filters["local"] = local
    env.filters["span"] = lambda event: describe_span(event.start, event.end, zone)
    env.globals["time_zone"] = time_zone
    return env


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env = request.app[keys.TEMPLATES]
    html = env.get_template(template).render(
        user=request.get(keys.USER), csrf_token=request.get(keys.CSRF_TOKEN, ""), **context
    )
    return web.Response(text=html, status=status, content_type="text/html")
