"""What the Chromium tests share: the app served where its links point, Debian's
Chromium launched with a fake camera and microphone, and pages whose script errors
fail the test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from clinicconf.app import create_app
from clinicconf.config import Settings

from .accounts import Account
from .clinic import CLINIC_ZONE
from .servers import AiohttpClient

CHROMIUM = Path("/usr/bin/chromium")
# See ../shared/guide/webrtc-testing.md: quiet, loopback only, no first-run work.
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 5000


def served_settings(settings: Settings, port: int) -> Settings:
    # Links carry the server's real address, so that the browser can follow them.
    return dataclasses.replace(settings, port=port, time_zone=CLINIC_ZONE)


async def serve(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings), server_kwargs={"port": settings.port})


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(
    browser: Browser, settings: Settings, permissions: list[str] | None = None
) -> BrowserContext:
    context = await browser.new_context(
        base_url=settings.public_base_url, permissions=permissions or []
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


def watch_errors(page: Page, errors: list[str], *, server_down: bool = False) -> None:
    """Collect the page's script errors: a broken script would leave a control dead
    without a trace, so the tests fail on them instead. With `server_down`, the test
    takes the server away on purpose, and the browser's report of each refused
    websocket connection is the outage itself, not a fault of the page."""
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: _record_console_error(message, errors, server_down))


def _record_console_error(message: ConsoleMessage, errors: list[str], server_down: bool) -> None:
    # A failed load is the server's answer (no favicon, a join link not open yet),
    # not a script error.
    if message.type != "error" or message.text.startswith("Failed to load resource"):
        return
    if server_down and message.text.startswith("WebSocket connection to"):
        return
    errors.append(message.text)


async def sign_in(page: Page, account: Account) -> None:
    await page.goto("/signin")
    await page.get_by_label("Email").fill(account.email)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("link", name="New event")).to_be_visible()
