"""Protections every response and the sign-in form carry."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf.app import create_app
from clinicconf.config import Settings

from .conftest import AiohttpClient

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
