"""Invitations and cancellations by email, received by a real SMTP server."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from clinicconf.config import Settings
from clinicconf.schedule import EventInput

from ..support.consultation import (
    open_clinic,
    schedule_consultation,
    tried_and_failed,
    wait_for_outbox,
)
from ..support.servers import AiohttpClient, SmtpServer, TlsSmtp

BASE_URL = "https://clinic.example"
# Not UTC, so that a time shown in the wrong zone is noticed.
CLINIC_ZONE = "America/New_York"
STAFF = {"ada@clinic.test": "Ada Admin", "sam@clinic.test": "Sam Staff"}
PATIENTS = {"pat@example.test": "Pat Patel", "robin@example.test": "Robin Roe"}


def with_smtp(settings: Settings, port: int, **changes: str) -> Settings:
    """Plain SMTP on 127.0.0.1 unless `changes` say otherwise."""
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}
    return replace(settings, base_url=BASE_URL, time_zone=CLINIC_ZONE, **(smtp | changes))


def recipient(mail: EmailMessage) -> str:
    [address] = mail["To"].addresses
    return str(address.addr_spec)


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def calendar_of(mail: EmailMessage) -> Calendar:
    [part] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    return Calendar.from_ical(part.get_content())


def everything_readable(mail: EmailMessage) -> str:
    """The headers, the text and the calendar file: all a recipient can read."""
    parts = [f"{name}: {value}" for name, value in mail.items()]
    parts += [str(p.get_content()) for p in mail.walk() if not p.is_multipart()]
    return "\n".join(parts)


async def test_every_invitee_gets_their_own_link_and_a_calendar_entry(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server.port))
    consultation = await schedule_consultation(app)
    event = consultation.event

    mails = {recipient(m): m for m in await smtp_server.wait_for(4)}

    assert sorted(mails) == sorted(STAFF | PATIENTS)
    local_start = event.start.astimezone(ZoneInfo(CLINIC_ZONE))
    links = set()
    for address, mail in mails.items():
        link = await consultation.link(address)
        links.add(link)
        assert mail["Subject"].startswith("Telehealth invitation: Follow-up consultation, ")
        assert f"{local_start:%H:%M}" in mail["Subject"]
        assert link in text_of(mail)
        calendar = calendar_of(mail)
        assert calendar["method"] == "REQUEST"
        [entry] = calendar.walk("VEVENT")
        assert entry.decoded("dtstart") == event.start
        assert entry.decoded("dtend") == event.end
        assert entry["summary"] == "Follow-up consultation"
        assert entry["uid"] == f"event-{event.id}@clinic.example"
        assert entry["url"] == link
    assert len(links) == 4
    assert all(link.startswith(f"{BASE_URL}/j/") for link in links)

    # Staff see everyone invited; a patient sees the staff, never the other patient.
    for address in STAFF:
        assert all(name in text_of(mails[address]) for name in PATIENTS.values())
    for address, name in PATIENTS.items():
        readable = everything_readable(mails[address])
        assert all(staff_name in readable for staff_name in STAFF.values())
        (other_address, other_name) = next(p for p in PATIENTS.items() if p[1] != name)
        assert other_name not in readable
        assert other_address not in readable

    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")
    assert [row["status"] for row in rows] == ["sent"] * 4


async def test_cancelling_removes_the_entry_from_everyones_calendar(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server.port))
    consultation = await schedule_consultation(app)
    await smtp_server.wait_for(4)

    await consultation.scheduler.cancel_event(consultation.user, consultation.event.id)

    cancellations = (await smtp_server.wait_for(8))[4:]
    assert sorted(recipient(m) for m in cancellations) == sorted(STAFF | PATIENTS)
    for mail in cancellations:
        assert mail["Subject"].startswith("Cancelled: Follow-up consultation, ")
        assert "has been cancelled" in text_of(mail)
        assert "/j/" not in everything_readable(mail)
        calendar = calendar_of(mail)
        assert calendar["method"] == "CANCEL"
        [entry] = calendar.walk("VEVENT")
        assert entry["status"] == "CANCELLED"
        assert entry["uid"] == f"event-{consultation.event.id}@clinic.example"
        # Higher than the invitation's, so that calendars apply it.
        assert entry["sequence"] == 1


async def test_a_change_updates_calendars_and_tells_whoever_was_taken_off(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server.port))
    consultation = await schedule_consultation(app)
    event = consultation.event
    await smtp_server.wait_for(4)
    later = timedelta(hours=2)

    await consultation.scheduler.update_event(
        consultation.user,
        event.id,
        EventInput(
            "Follow-up consultation",
            event.event_type.id,
            event.start + later,
            event.end + later,
            [s.id for s in event.staff],
            [p.id for p in event.patients if p.name != "Robin Roe"],
        ),
    )

    mails = {recipient(m): m for m in (await smtp_server.wait_for(8))[4:]}
    assert sorted(mails) == sorted(STAFF | PATIENTS)
    removed = mails.pop("robin@example.test")
    assert removed["Subject"].startswith("Cancelled: ")
    assert "no longer includes you" in text_of(removed)
    assert calendar_of(removed)["method"] == "CANCEL"
    for address, mail in mails.items():
        assert mail["Subject"].startswith("Telehealth invitation: ")
        [entry] = calendar_of(mail).walk("VEVENT")
        assert entry.decoded("dtstart") == event.start + later
        assert entry["sequence"] == 1
        assert await consultation.link(address) in text_of(mail)
    assert "Robin Roe" not in text_of(mails["ada@clinic.test"])


async def test_tls_with_the_clinics_own_certificate_authority(
    aiohttp_client: AiohttpClient, settings: Settings, tls_smtp_server: TlsSmtp
) -> None:
    server = tls_smtp_server.server
    smtp_settings = with_smtp(
        settings,
        server.port,
        smtp_security=tls_smtp_server.security,
        smtp_ca_file=str(tls_smtp_server.ca_file),
        smtp_username=SmtpServer.USERNAME,
        smtp_password=SmtpServer.PASSWORD,
    )
    app = await open_clinic(aiohttp_client, smtp_settings)
    await schedule_consultation(app)

    assert sorted(recipient(m) for m in await server.wait_for(4)) == sorted(STAFF | PATIENTS)
    assert server.logins == [(SmtpServer.USERNAME, SmtpServer.PASSWORD)] * 4
    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")
    assert [row["status"] for row in rows] == ["sent"] * 4


async def test_a_certificate_nobody_vouches_for_is_not_trusted(
    aiohttp_client: AiohttpClient, settings: Settings, tls_smtp_server: TlsSmtp
) -> None:
    server = tls_smtp_server.server
    smtp_settings = with_smtp(settings, server.port, smtp_security=tls_smtp_server.security)
    app = await open_clinic(aiohttp_client, smtp_settings)
    await schedule_consultation(app)

    rows = await wait_for_outbox(app, tried_and_failed)
    for row in rows:
        assert row["status"] == "pending"  # tried again later: the settings may be fixed
        assert row["last_error"].startswith("SMTP server unreachable (certificate not trusted")
    assert server.messages == [] and server.logins == []


async def test_a_refused_recipient_is_a_failure_that_names_no_one(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse_recipients = "550 5.1.1 <{address}>: Recipient address rejected"
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server.port))
    await schedule_consultation(app)

    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")

    for row in rows:
        assert row["status"] == "failed"
        assert row["attempts"] == 1
        assert row["last_error"] == "the mail server refused the recipient (SMTP 550)"
    assert smtp_server.messages == []


async def test_without_smtp_mail_is_saved_to_files_and_the_log_names_no_one(
    aiohttp_client: AiohttpClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="clinicconf")
    app = await open_clinic(aiohttp_client, settings)
    consultation = await schedule_consultation(app)

    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")

    saved: list[Path] = sorted(settings.undelivered_dir.iterdir())
    assert saved == [settings.undelivered_dir / f"email-{row['id']}.eml" for row in rows]
    tokens = []
    for path in saved:
        assert path.stat().st_mode & 0o777 == 0o600
        mail = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        assert isinstance(mail, EmailMessage)
        link = await consultation.link(recipient(mail))
        assert link in text_of(mail)
        tokens.append(link.rsplit("/", 1)[1])
        assert f"email not sent (no SMTP server configured); saved to {path}" in caplog.text
    for secret in [*tokens, *STAFF, *STAFF.values(), *PATIENTS, *PATIENTS.values()]:
        assert secret not in caplog.text
    assert [row["status"] for row in rows] == ["saved"] * 4
