"""The .ics attached to invitations and cancellations (iCalendar, RFC 5545; the
REQUEST and CANCEL methods of iTIP, RFC 5546), made with the icalendar package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

CalendarMethod = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True)
class CalendarEntry:
    # The same for every message about one event, so that calendars update the entry.
    uid: str
    # Bumped on every change: a calendar keeps the entry with the highest.
    sequence: int
    start: datetime
    end: datetime
    summary: str
    description: str
    url: str | None
    organizer: Address
    # Only the recipient: an entry sent to a patient must not name other patients.
    attendee: Address


def calendar_file(entry: CalendarEntry, method: CalendarMethod) -> str:
    calendar = Calendar()
    calendar.add("prodid", "-//clinicconf//clinicconf//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)

    event = Event()
    event.add("uid", entry.uid)
    event.add("sequence", entry.sequence)
    event.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    event.add("dtstart", entry.start.astimezone(UTC))
    event.add("dtend", entry.end.astimezone(UTC))
    event.add("summary", entry.summary)
    event.add("description", entry.description)
    if entry.url is not None:
        event.add("url", entry.url)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("organizer", _calendar_address(entry.organizer))
    attendee = _calendar_address(entry.attendee)
    # Replies would go to the organizer, the clinic's sending address: none are asked for.
    attendee.params["rsvp"] = "FALSE"
    event.add("attendee", attendee)
    calendar.add_component(event)
    ics: bytes = calendar.to_ical()
    return ics.decode()


def _calendar_address(address: Address) -> vCalAddress:
    value = vCalAddress(f"mailto:{address.addr_spec}")
    if address.display_name:
        value.params["cn"] = vText(address.display_name)
    return value
