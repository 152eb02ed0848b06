"""The messages themselves, rendered from an outbox row when it is sent.

The row names only the kind of message, the event and the recipient: the event's
details are read as they are now (through an EventReader, which the app gives the
outbox sender), and the recipient's join link is derived again here, so that no link
is ever stored with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Final, Protocol
from urllib.parse import urlsplit

from ..config import Settings
from ..db import Database, Row, utc_now
from ..errors import NotFound
from ..links import JoinLinks
from ..schedule import Event, Patient, PersonKind, Staff
from ..timespan import describe_span
from .calendar import CalendarEntry, CalendarMethod, calendar_file
from .delivery import DeliveryError, EmailOut, OutgoingMessage, SmsOut
from .outbox import MessageKind

# Keeps a text message to two segments (306 characters) with the time and the link.
SMS_TITLE_LENGTH: Final = 60


class EventReader(Protocol):
    """What a message needs of the schedule, read as it is now; each raises NotFound
    for what is gone (scheduling/records.py's ScheduleRecords is one)."""

    async def get_event(self, event_id: int) -> Event: ...

    async def get_staff(self, staff_id: int) -> Staff: ...

    async def get_patient(self, patient_id: int) -> Patient: ...


async def compose(
    db: Database, settings: Settings, links: JoinLinks, events: EventReader, row: Row
) -> OutgoingMessage:
    """The email or text message for an outbox row; raises DeliveryError when there is
    none to send any more (no address, the event or the person gone)."""
    kind: MessageKind = row["kind"]
    person_kind: PersonKind = row["recipient_kind"]
    try:
        event = await events.get_event(row["event_id"])
        person = event.person(person_kind, row["recipient_id"])
        on_event = person is not None
        if person is None:  # taken off the event since: the cancellation still goes out
            person = await _find_person(events, person_kind, row["recipient_id"])
    except NotFound as exc:
        raise DeliveryError(
            "not sent: the event or the recipient no longer exists", permanent=True
        ) from exc
    _check_still_wanted(kind, event, on_event)

    link = None
    if kind != "cancellation" and on_event and event.event_type.video_conferencing:
        link = await links.url_for(db, event.id, person_kind, person.id)
    if kind == "join_link" and link is None:
        raise DeliveryError("not sent: the event has no video conferencing", permanent=True)

    letter = Letter(settings, event, person_kind, person, link)
    if row["channel"] == "sms":
        if not person.phone:
            raise DeliveryError("not sent: the recipient has no phone number", permanent=True)
        return SmsOut(row["id"], person.phone, letter.sms_text(kind))
    if not person.email:
        raise DeliveryError("not sent: the recipient has no email address", permanent=True)
    return EmailOut(row["id"], letter.email(kind, person.email))


async def _find_person(events: EventReader, kind: PersonKind, person_id: int) -> Staff | Patient:
    if kind == "staff":
        return await events.get_staff(person_id)
    return await events.get_patient(person_id)


def _check_still_wanted(kind: MessageKind, event: Event, on_event: bool) -> None:
    """A message queued earlier may have been overtaken by a later change: an
    invitation by the event's cancellation, a cancellation by the person's return."""
    if kind == "cancellation":
        if on_event and not event.cancelled:
            raise DeliveryError("not sent: the person is on the event again", permanent=True)
    elif event.cancelled:
        raise DeliveryError("not sent: the event was cancelled", permanent=True)
    elif not on_event:
        raise DeliveryError("not sent: the person was taken off the event", permanent=True)


def one_line(text: str) -> str:
    """Names and titles go into headers and one-line texts: no line breaks in them."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Letter:
    """One recipient's view of an event, in the words of each kind of message."""

    settings: Settings
    event: Event
    person_kind: PersonKind
    person: Staff | Patient
    link: str | None

    @property
    def title(self) -> str:
        return one_line(self.event.title)

    @property
    def when(self) -> str:
        return describe_span(self.event.start, self.event.end, self.settings.zone)

    @property
    def host(self) -> str:
        return urlsplit(self.settings.public_base_url).hostname or "localhost"

    def sms_text(self, kind: MessageKind) -> str:
        title = self.title
        if len(title) > SMS_TITLE_LENGTH:
            title = title[: SMS_TITLE_LENGTH - 3].rstrip() + "..."
        if kind == "cancellation":
            return f"Cancelled: {title}, {self.when}."
        if self.link is None:
            return f"{title}, {self.when}."
        return f"{title}, {self.when}. Your link to join: {self.link}"

    def email(self, kind: MessageKind, address: str) -> EmailMessage:
        recipient = _address(self.person.name, address)
        message = EmailMessage()
        message["From"] = self.settings.smtp_sender
        message["To"] = recipient
        message["Date"] = format_datetime(utc_now())
        # A domain given: make_msgid would otherwise look up this machine's name.
        message["Message-ID"] = make_msgid(domain=self.host)
        if kind == "invitation":
            video = "Telehealth invitation" if self.link else "Invitation"
            message["Subject"] = f"{video}: {self.title}, {self.when}"
            message.set_content(self._invitation_text())
            self._attach_calendar(message, recipient, "REQUEST")
        elif kind == "join_link":
            message["Subject"] = f"Your link to join: {self.title}, {self.when}"
            message.set_content(self._join_link_text())
        else:
            message["Subject"] = f"Cancelled: {self.title}, {self.when}"
            message.set_content(self._cancellation_text())
            self._attach_calendar(message, recipient, "CANCEL")
        return message

    def _greeting(self) -> str:
        return f"Hello {one_line(self.person.name)},\n\n"

    def _link_paragraph(self) -> str:
        minutes = self.settings.join_window_minutes
        return (
            "Join the video conference with your own link. It opens"
            f" {minutes} minutes\nbefore the start:\n\n    {self.link}\n\n"
            "Please do not pass it on: it lets you in under your name.\n\n"
        )

    def _invitation_text(self) -> str:
        text = self._greeting()
        text += f"You are invited to: {self.title}\nWhen: {self.when}\n\n"
        text += self._link_paragraph() if self.link else "There is no video conference.\n\n"
        text += f"Clinic staff: {_names(self.event.staff)}\n"
        # A patient learns who of the clinic will be there, never who the other patients are.
        if self.person_kind == "staff" and self.event.patients:
            text += f"Patients: {_names(self.event.patients)}\n"
        text += "\nThe attached calendar file adds the appointment to your calendar.\n"
        return text

    def _join_link_text(self) -> str:
        return (
            self._greeting()
            + f"Event: {self.title}\nWhen: {self.when}\n\n"
            + self._link_paragraph()
        )

    def _cancellation_text(self) -> str:
        news = "has been cancelled" if self.event.cancelled else "no longer includes you"
        return (
            self._greeting()
            + f"{self.title} ({self.when}) {news}.\n\n"
            + "The attached calendar file removes it from your calendar.\n"
        )

    def _attach_calendar(
        self, message: EmailMessage, recipient: Address, method: CalendarMethod
    ) -> None:
        sender_name, sender_address = parseaddr(self.settings.smtp_sender)
        description = f"When: {self.when}"
        if self.link:
            description += f"\nYour own link to join: {self.link}"
        entry = CalendarEntry(
            uid=f"event-{self.event.id}@{self.host}",
            sequence=self.event.sequence,
            start=self.event.start,
            end=self.event.end,
            summary=self.title,
            description=description,
            url=self.link,
            organizer=Address(sender_name, addr_spec=sender_address),
            attendee=recipient,
        )
        message.add_attachment(
            calendar_file(entry, method),
            subtype="calendar",
            filename="invitation.ics" if method == "REQUEST" else "cancellation.ics",
            params={"method": method},
        )


def _names(people: list[Staff] | list[Patient]) -> str:
    return ", ".join(one_line(p.name) for p in people) or "none yet"


def _address(name: str, address: str) -> Address:
    try:
        return Address(one_line(name), addr_spec=address)
    except (ValueError, HeaderParseError) as exc:
        raise DeliveryError(
            "not sent: the recipient's email address cannot be used", permanent=True
        ) from exc
