"""Fixtures of the Chromium tests: the app served on the port its links name."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from clinicconf.config import Settings

from ..support.browser import serve
from ..support.servers import AiohttpClient


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await serve(aiohttp_client, settings)
