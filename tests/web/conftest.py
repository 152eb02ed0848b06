"""Fixtures of the pages and API tests: a Public Conference under way, with the
paths of its links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp import web

from ..support.accounts import Account
from ..support.pages import Conference, schedule


@pytest.fixture
async def conference(app: web.Application, admin: Account, staff: Account) -> Conference:
    return await schedule(app, admin, staff, timedelta(minutes=-5))
