"""Fixtures shared by more than one area of the suite: settings in a temporary data
directory, the real application from the real factory, accounts to act as; a Public
Conference under way and pages on its socket; a small clinic, its links and Chromium
visitors opening them; the SMTP server and the Vonage stand-in. A fixture used by
one area only is in that area's conftest.py."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.app import create_app
from clinicconf.config import Forwarding, Settings
from clinicconf.db import utc_now
from clinicconf.schedule import EventInput, EventTypeInput, PatientInput

from .support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from .support.browser import chromium
from .support.clinic import Clinic, build_clinic
from .support.lobby import Lobby, Page, socket_path
from .support.servers import (
    HOST,
    LOOPBACK_ICE,
    AiohttpClient,
    Client,
    SmtpServer,
    TlsSmtp,
    VonageStandIn,
    free_port,
    server_tls_context,
)
from .support.visitors import Links, Visitors, schedule


@pytest.fixture
def forwarding() -> Forwarding:
    """How the SFU carries media; a test may parametrize it to run on both paths."""
    return "packets"


@pytest.fixture
def settings(tmp_path: Path, forwarding: Forwarding) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        time_zone="UTC",
        ice_addresses=LOOPBACK_ICE,
        forwarding=forwarding,
    )


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def app(client: TestClient[web.Request, web.Application]) -> web.Application:
    return client.app


@pytest.fixture
async def admin(app: web.Application) -> Account:
    return await make_account(app, "Ada Admin", "ada@clinic.test", ADMIN_PASSWORD, admin=True)


@pytest.fixture
async def staff(app: web.Application) -> Account:
    return await make_account(app, "Sam Staff", "sam@clinic.test", STAFF_PASSWORD, admin=False)


@pytest.fixture
async def lobby(app: web.Application, admin: Account, staff: Account) -> Lobby:
    """A Public Conference under way: Ada and Sam (staff), Pat and Quinn (patients)."""
    scheduler = app[keys.SCHEDULER]
    host = StaffUser(admin.id, "Ada Admin", admin.email, True)
    kind = await scheduler.create_event_type(host, EventTypeInput("Group", True, True))
    pat = await scheduler.create_patient(host, PatientInput("Pat Patel", "R-1"))
    quinn = await scheduler.create_patient(host, PatientInput("Quinn Quist", "R-2"))
    start = utc_now() - timedelta(minutes=5)
    saved = await scheduler.create_event(
        host,
        EventInput(
            "Group session", kind.id, start, start + timedelta(hours=1), [admin.id, staff.id],
            [pat.id, quinn.id],
        ),
    )  # fmt: skip
    event_id = saved.event.id
    return Lobby(
        event_id,
        host,
        await socket_path(app, event_id, "staff", admin.id),
        await socket_path(app, event_id, "staff", staff.id),
        await socket_path(app, event_id, "patient", pat.id),
        await socket_path(app, event_id, "patient", quinn.id),
        await socket_path(app, event_id, "public", None),
    )


@pytest.fixture
async def open_page(client: Client) -> AsyncIterator[Any]:
    pages: list[Page] = []

    async def open_(path: str, **hello: Any) -> tuple[Page, dict[str, Any]]:
        page = Page(await client.ws_connect(path))
        pages.append(page)
        hello.setdefault("client_key", secrets.token_urlsafe(16))
        await page.send("hello", **hello)
        welcome = await page.receive("welcome")
        return page, welcome

    yield open_
    for page in pages:
        await page.ws.close()


@pytest.fixture
async def clinic(app: web.Application, staff: Account) -> Clinic:
    return await build_clinic(app, staff)


@pytest.fixture
async def links(app: web.Application, clinic: Clinic, staff: Account) -> Links:
    return await schedule(app, clinic, staff, start_in=-5)


@pytest.fixture
async def visitors(
    settings: Settings, client: TestClient[web.Request, web.Application]
) -> AsyncIterator[Visitors]:
    async with chromium() as browser:
        visitors = Visitors(browser, settings)
        yield visitors
    assert visitors.errors == []


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server, running; `.stop()` and `.start()` it to take it down and up."""
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["starttls", "tls"])
def tls_smtp_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TlsSmtp]:
    """An SMTP server speaking STARTTLS, then one speaking TLS from the start, with a
    certificate from a CA of its own; both want a login."""
    ca = trustme.CA()
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = SmtpServer(free_port(), server_tls_context(ca), request.param)
    server.start()
    yield TlsSmtp(server, request.param, ca_file)
    server.stop()


@pytest.fixture
async def vonage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VonageStandIn]:
    """The stand-in, running on the test's event loop; the SDK (requests) trusts its CA."""
    ca = trustme.CA()
    ca_file = tmp_path / "vonage-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    stand_in = VonageStandIn()
    app = web.Application()
    app.router.add_post("/sms/json", stand_in.handle_sms)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=server_tls_context(ca))
    await site.start()
    stand_in.port = runner.addresses[0][1]
    yield stand_in
    await runner.cleanup()
