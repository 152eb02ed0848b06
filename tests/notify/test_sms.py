"""Join links by text message, through Vonage's SDK to a local HTTPS stand-in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest
from aiohttp import web

from clinicconf.config import Settings
from clinicconf.db import Row, from_db_time, utc_now
from clinicconf.notify import sms

from ..support.consultation import (
    Consultation,
    make_retries_due,
    open_clinic,
    outbox_rows,
    schedule_consultation,
)
from ..support.servers import AiohttpClient, VonageStandIn, wait_until

PAT_EMAIL = "pat@example.test"
PAT_PHONE = "+14155550123"


def with_vonage(settings: Settings, vonage: VonageStandIn) -> Settings:
    return replace(
        settings,
        vonage_api_key=vonage.api_key,
        vonage_api_secret=vonage.api_secret,
        vonage_sender_id="Clinic",
        vonage_rest_host=vonage.rest_host,
    )


async def text_pat_her_link(consultation: Consultation) -> None:
    pat = next(p for p in consultation.event.patients if p.email == PAT_EMAIL)
    await consultation.scheduler.send_link(
        consultation.user, consultation.event.id, "patient", pat.id, "sms"
    )


async def wait_for_sms_row(app: web.Application, done: Callable[[Row], bool]) -> Row:
    """The text message's outbox row, once it is `done`."""

    async def sms_row() -> Row:
        [row] = [r for r in await outbox_rows(app) if r["channel"] == "sms"]
        return row

    async def is_done() -> bool:
        return done(await sms_row())

    await wait_until(is_done)
    return await sms_row()


async def test_a_join_link_by_sms_reaches_vonage(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    vonage: VonageStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for logger in ("clinicconf", "vonage"):
        caplog.set_level(logging.DEBUG, logger=logger)
    app = await open_clinic(aiohttp_client, with_vonage(settings, vonage))
    consultation = await schedule_consultation(app)

    await text_pat_her_link(consultation)

    row = await wait_for_sms_row(app, lambda row: row["status"] != "pending")
    assert row["status"] == "sent"
    [request] = vonage.requests
    assert (request.api_key, request.api_secret) == (vonage.api_key, vonage.api_secret)
    assert request.form["to"] == PAT_PHONE.removeprefix("+")
    assert request.form["from"] == "Clinic"
    assert request.form["type"] == "text"
    text = request.form["text"]
    assert text.startswith("Follow-up consultation, ")
    link = await consultation.link(PAT_EMAIL)
    assert text.endswith(f"Your link to join: {link}")
    assert len(text) <= 2 * 153  # two segments at most
    # Not even at debug level does the log hold the number or the link.
    assert "outbox: message 5 (join_link by sms) sent" in caplog.text
    assert PAT_PHONE.removeprefix("+") not in caplog.text
    assert link.rsplit("/", 1)[1] not in caplog.text


async def test_a_refused_number_is_a_failure_that_does_not_quote_it(
    aiohttp_client: AiohttpClient, settings: Settings, vonage: VonageStandIn
) -> None:
    vonage.reply_status = "3"  # Invalid params: the number, here
    app = await open_clinic(aiohttp_client, with_vonage(settings, vonage))
    consultation = await schedule_consultation(app)

    await text_pat_her_link(consultation)

    row = await wait_for_sms_row(app, lambda row: row["status"] != "pending")
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert row["last_error"] == "Vonage refused the message: status 3 (Invalid params)"
    assert len(vonage.requests) == 1


async def test_throttling_is_retried(
    aiohttp_client: AiohttpClient, settings: Settings, vonage: VonageStandIn
) -> None:
    vonage.reply_status = "1"
    app = await open_clinic(aiohttp_client, with_vonage(settings, vonage))
    consultation = await schedule_consultation(app)

    await text_pat_her_link(consultation)

    row = await wait_for_sms_row(app, lambda row: row["attempts"] == 1)
    assert row["status"] == "pending"
    assert row["last_error"] == "Vonage refused the message: status 1 (Throttled)"
    assert from_db_time(row["next_attempt_at"]) > utc_now()

    vonage.reply_status = "0"
    await make_retries_due(app)

    row = await wait_for_sms_row(app, lambda row: row["status"] != "pending")
    assert row["status"] == "sent"
    assert row["attempts"] == 2
    assert row["last_error"] is None
    assert [r.form["text"] for r in vonage.requests] == [vonage.requests[0].form["text"]] * 2


async def test_credentials_vonage_refuses_are_retried(
    aiohttp_client: AiohttpClient, settings: Settings, vonage: VonageStandIn
) -> None:
    wrong_secret = replace(with_vonage(settings, vonage), vonage_api_secret="not-the-secret")
    app = await open_clinic(aiohttp_client, wrong_secret)
    consultation = await schedule_consultation(app)

    await text_pat_her_link(consultation)

    row = await wait_for_sms_row(app, lambda row: row["attempts"] == 1)
    # Pending: once an administrator corrects the secret, it goes out.
    assert row["status"] == "pending"
    assert row["last_error"] == "Vonage answered HTTP 401"
    assert vonage.requests == []


async def test_vonage_errors_and_timeouts_are_retried_until_it_answers(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    vonage: VonageStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Vonage is waited for a second here (30 in service), so that the test is short.
    monkeypatch.setattr(sms, "VONAGE_TIMEOUT_SECONDS", 1)
    vonage.http_error = 500
    app = await open_clinic(aiohttp_client, with_vonage(settings, vonage))
    consultation = await schedule_consultation(app)

    await text_pat_her_link(consultation)
    row = await wait_for_sms_row(app, lambda row: row["attempts"] == 1)
    assert (row["status"], row["last_error"]) == ("pending", "Vonage answered HTTP 500")

    vonage.http_error, vonage.delay_seconds = None, 3.0
    await make_retries_due(app)
    row = await wait_for_sms_row(app, lambda row: row["attempts"] == 2)
    assert (row["status"], row["last_error"]) == ("pending", "Vonage did not answer in time")

    vonage.delay_seconds = 0.0
    await make_retries_due(app)
    row = await wait_for_sms_row(app, lambda row: row["status"] != "pending")
    assert (row["status"], row["attempts"]) == ("sent", 3)
    # Vonage saw the message twice (the late answer it may have acted on, and the one
    # that was answered): a timeout can send a text twice, never lose it.
    assert len(vonage.requests) == 2
