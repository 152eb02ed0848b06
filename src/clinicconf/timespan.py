"""How an event's time is written for people: in the clinic's time zone, the end's
day named only when it differs from the start's. Plain ASCII, so that a text
message stays in the cheaper GSM alphabet."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def describe_span(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """'Wed 25 Nov 2026, 21:00 - 22:00 CST', or '..., 23:30 - Thu 26 Nov, 00:30 CST'."""
    start, end = start.astimezone(zone), end.astimezone(zone)
    end_format = "%H:%M %Z" if end.date() == start.date() else "%a %d %b, %H:%M %Z"
    return f"{start:%a %d %b %Y, %H:%M} - {end:{end_format}}"
