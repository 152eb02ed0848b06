"""The outbox: nothing is lost while the mail server is down, nothing is sent twice,
also across a restart of the server."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from clinicconf import keys
from clinicconf.app import create_app
from clinicconf.config import Settings
from clinicconf.db import Database, to_db_time, utc_now
from clinicconf.schedule import EventInput

from ..support.consultation import (
    make_retries_due,
    open_clinic,
    outbox_rows,
    schedule_consultation,
    tried_and_failed,
    wait_for_outbox,
)
from ..support.servers import AiohttpClient, SmtpServer

INVITEES = ["ada@clinic.test", "pat@example.test", "robin@example.test", "sam@clinic.test"]


def with_smtp(settings: Settings, server: SmtpServer) -> Settings:
    return replace(settings, smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")


def recipients(server: SmtpServer) -> list[str]:
    return sorted(str(m["To"].addresses[0].addr_spec) for m in server.messages)


async def assert_each_delivered_once(app: web.Application, server: SmtpServer) -> None:
    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")
    current = [row for row in rows if row["status"] != "superseded"]
    assert [row["status"] for row in current] == ["sent"] * len(INVITEES)
    # Nothing is left to send, and nothing more arrives.
    assert await app[keys.OUTBOX_SENDER].deliver_due() == 0
    await asyncio.sleep(0.2)
    assert recipients(server) == INVITEES


async def test_mail_waits_while_the_server_is_down_and_goes_out_once_it_is_up(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.stop()
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server))
    await schedule_consultation(app)

    rows = await wait_for_outbox(app, tried_and_failed)
    for row in rows:
        assert row["status"] == "pending"
        assert row["attempts"] == 1
        assert row["last_error"] == "SMTP server unreachable (connection refused)"

    # A second failed round counts a second attempt.
    await make_retries_due(app)
    await wait_for_outbox(app, lambda row: row["attempts"] == 2)

    smtp_server.start()
    await make_retries_due(app)

    await assert_each_delivered_once(app, smtp_server)
    assert all(row["last_error"] is None for row in await outbox_rows(app))


async def test_mail_queued_before_a_restart_goes_out_once_after_it(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_settings = with_smtp(settings, smtp_server)
    smtp_server.stop()
    first = await aiohttp_client(create_app(smtp_settings))
    await schedule_consultation(first.app)
    await wait_for_outbox(first.app, tried_and_failed)
    await first.close()

    # Between the two runs: the mail server is back, and the retries are due.
    db = await Database.open(smtp_settings.database_path)
    try:
        await db.execute("UPDATE outbox SET next_attempt_at = ?", (to_db_time(utc_now()),))
    finally:
        await db.close()
    smtp_server.start()

    second = await aiohttp_client(create_app(smtp_settings))

    await assert_each_delivered_once(second.app, smtp_server)


async def test_invitations_overtaken_by_the_cancellation_are_not_sent(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.stop()
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server))
    consultation = await schedule_consultation(app)
    await wait_for_outbox(app, tried_and_failed)
    await consultation.scheduler.cancel_event(consultation.user, consultation.event.id)

    smtp_server.start()
    await make_retries_due(app)

    rows = await wait_for_outbox(app, lambda row: row["status"] != "pending")
    assert sorted((row["kind"], row["status"]) for row in rows) == [("cancellation", "sent")] * len(
        INVITEES
    ) + [("invitation", "superseded")] * len(INVITEES)
    assert recipients(smtp_server) == INVITEES
    assert all(m["Subject"].startswith("Cancelled: ") for m in smtp_server.messages)


async def test_an_event_changed_twice_during_an_outage_sends_one_invitation_each(
    aiohttp_client: AiohttpClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.stop()
    app = await open_clinic(aiohttp_client, with_smtp(settings, smtp_server))
    consultation = await schedule_consultation(app)
    event = consultation.event
    for title in ("Follow-up, moved", "Follow-up, moved again"):
        change = EventInput(
            title,
            event.event_type.id,
            event.start,
            event.end,
            [s.id for s in event.staff],
            [p.id for p in event.patients],
        )
        await consultation.scheduler.update_event(consultation.user, event.id, change)
    # The outage lasts until the newest invitations have failed once, so that no attempt
    # is still under way when the server comes back: a message already being sent when
    # it was superseded rightly goes out (sender.py), and that is not this case.
    await wait_for_outbox(app, lambda row: row["status"] == "superseded" or tried_and_failed(row))

    smtp_server.start()
    await make_retries_due(app)

    await assert_each_delivered_once(app, smtp_server)
    assert {m["Subject"].split(",")[0] for m in smtp_server.messages} == {
        "Telehealth invitation: Follow-up"
    }
    assert all("moved again" in m["Subject"] for m in smtp_server.messages)
