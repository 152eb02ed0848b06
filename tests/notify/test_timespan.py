"""How event times read in pages, emails and text messages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from clinicconf.timespan import describe_span

CHICAGO = ZoneInfo("America/Chicago")


def test_a_session_within_one_day_names_the_day_once() -> None:
    start = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    end = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    assert describe_span(start, end, CHICAGO) == "Wed 25 Nov 2026, 15:00 - 16:00 CST"


def test_a_session_past_midnight_names_the_day_it_ends() -> None:
    start = datetime(2026, 11, 26, 5, 30, tzinfo=UTC)  # 23:30 in Chicago
    end = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    assert describe_span(start, end, CHICAGO) == "Wed 25 Nov 2026, 23:30 - Thu 26 Nov, 00:30 CST"
