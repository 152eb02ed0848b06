"""Fixtures shared by the whole suite: settings in a temporary data directory, the
real application from the real factory, and accounts to act as."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf import accounts, keys
from clinicconf.app import create_app
from clinicconf.config import Forwarding, Settings
from clinicconf.schedule import StaffInput
from clinicconf.scheduling import Scheduler
from clinicconf.security import hash_password

ADMIN_PASSWORD = "correct horse battery"
STAFF_PASSWORD = "staple battery horse"

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


# Media between aiortc and the browsers stays on loopback (the network rule).
LOOPBACK_ICE = "127.0.0.1"


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


@dataclass
class Account:
    id: int
    email: str
    password: str
    api_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


async def make_account(
    app: web.Application, name: str, email: str, password: str, *, admin: bool
) -> Account:
    scheduler: Scheduler = app[keys.SCHEDULER]
    staff = await scheduler.create_staff(
        None, StaffInput(name, email, "+12025550123", admin), await hash_password(password)
    )
    token = await accounts.create_api_token(app[keys.DATABASE], staff.id)
    return Account(staff.id, email, password, token)


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


async def api(
    client: TestClient[web.Request, web.Application],
    account: Account,
    method: str,
    path: str,
    json: Any = None,
) -> tuple[int, Any]:
    """Call the JSON API as `account`; returns the status and the decoded body."""
    async with client.request(method, "/api/v1" + path, json=json, headers=account.auth) as resp:
        return resp.status, await resp.json()
