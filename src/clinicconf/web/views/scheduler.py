"""The Scheduler: a week of events, Monday to Sunday in the clinic's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from aiohttp import web

from ... import keys
from ...errors import BadRequest
from ...schedule import Event, may_change
from ..middleware import current_user
from ..rendering import render

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Day:
    date: date
    events: list[Event]
    is_today: bool


MIN_YEAR: Final = 1900
MAX_YEAR: Final = 9000


def week_start(requested: str | None, today: date) -> date:
    """The Monday of the week holding `requested` (YYYY-MM-DD), or of this week."""
    day = today
    if requested:
        try:
            day = date.fromisoformat(requested)
        except ValueError:
            raise BadRequest("The week is given as a date like 2024-05-06.", "week") from None
        # Far enough either way for any clinic, and clear of date arithmetic's limits.
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise BadRequest(f"The week must fall between {MIN_YEAR} and {MAX_YEAR}.", "week")
    return day - timedelta(days=day.weekday())


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


@routes.get("/")
async def week_view(request: web.Request) -> web.Response:
    user = current_user(request)
    zone = request.app[keys.SETTINGS].zone
    today = datetime.now(zone).date()
    monday = week_start(request.query.get("week"), today)
    dates = [monday + timedelta(days=n) for n in range(7)]
    # Eight midnights bound the seven days; an event shows on every day it overlaps.
    bounds = [local_midnight(monday + timedelta(days=n), zone) for n in range(8)]
    events = await request.app[keys.SCHEDULER].events_between(bounds[0], bounds[-1])
    days = [
        Day(
            day,
            [e for e in events if e.start < bounds[n + 1] and e.end > bounds[n]],
            day == today,
        )
        for n, day in enumerate(dates)
    ]
    return render(
        request,
        "scheduler.html",
        days=days,
        previous_week=monday - timedelta(days=7),
        next_week=monday + timedelta(days=7),
        is_this_week=monday <= today < monday + timedelta(days=7),
        # Whose conference menus offer what (the server refuses the rest anyway).
        mine={e.id for e in events if may_change(user, e)},
    )
