"""Protections every response and the sign-in form carry."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf.app import create_app
from clinicconf.config import Settings
from clinicconf.throttle import FAILURES_PER_ACCOUNT

from ..support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account
from ..support.pages import submit
from ..support.servers import AiohttpClient

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/signin", 200),
        ("/", 303),  # the redirect to sign in
        ("/no/such/page", 404),
        ("/static/style.css", 200),
        ("/api/v1/events", 401),
    ],
)
async def test_every_kind_of_response_carries_the_security_headers(
    client: Client, path: str, status: int
) -> None:
    async with client.get(path, allow_redirects=False) as resp:
        assert resp.status == status
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in resp.headers  # plain http here


async def test_an_https_clinic_gets_hsts_and_secure_cookies(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(replace(settings, base_url="https://telehealth.clinic.example"))
    )
    async with client.get("/signin") as resp:
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        assert "Secure" in resp.headers["Set-Cookie"]


async def test_guessing_a_password_is_stopped_and_the_owner_waits_it_out(
    client: Client, admin: Account, staff: Account
) -> None:
    for _ in range(FAILURES_PER_ACCOUNT):
        wrong = await submit(client, "/signin", {"email": admin.email, "password": "guess"})
        assert wrong.status == 400
    # Now even the right password is refused for a while, with a plain explanation.
    right = await submit(client, "/signin", {"email": admin.email, "password": ADMIN_PASSWORD})
    assert right.status == 429
    assert "Too many failed sign-ins. Please wait 15 minutes" in right.text
    # Another account from the same address is not locked out.
    other = await submit(client, "/signin", {"email": staff.email, "password": STAFF_PASSWORD})
    assert other.status == 303
