"""Fixtures shared by the whole suite: settings in a temporary data directory, the
real application from the real factory, and accounts to act as."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf.app import create_app
from clinicconf.config import Forwarding, Settings

from .support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from .support.servers import LOOPBACK_ICE, AiohttpClient


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
