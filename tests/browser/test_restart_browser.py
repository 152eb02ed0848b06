"""The server killed outright (SIGKILL) under a moderated conference in Chromium, and
started again: without anyone touching anything, both pages reconnect and are back
in the conference within seconds, seeing and hearing each other as the host had set
it, with the host's controls as they were."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from clinicconf.bench.server import bench_settings, running_server, schedule_conference
from clinicconf.config import Settings

from ..support.browser import chromium, new_context, watch_errors
from ..support.visitors import RECORD_PEER_CONNECTIONS, Received, video_of

# What a browser tab may take to notice the loss, wait out its retry delay (1 s, then
# 2 s, then 4 s), and bring its media connection up again on a shared machine.
BACK_WITHIN_SECONDS = 20.0


def page_url(websocket_url: str) -> str:
    return "http://" + websocket_url.removeprefix("ws://").removesuffix("/ws")


async def open_page(browser: Browser, settings: Settings, url: str, errors: list[str]) -> Page:
    context = await new_context(browser, settings)
    await context.add_init_script(RECORD_PEER_CONNECTIONS)
    page = await context.new_page()
    watch_errors(page, errors, server_down=True)
    await page.goto(url)
    return page


async def only_sound_on(page: Page) -> Received:
    """The one other participant's sound (a tile shows only with a video)."""
    audio = page.locator("audio[data-mid]")
    await expect(audio).to_have_count(1, timeout=15_000)
    mid = await audio.get_attribute("data-mid")
    assert mid is not None
    return Received(page, mid, "audio")


async def test_pages_return_to_the_conference_after_the_server_is_killed(
    tmp_path: Path,
) -> None:
    settings = bench_settings(tmp_path / "data")
    host_socket, public_socket = await schedule_conference(settings)
    errors: list[str] = []
    async with chromium() as browser:
        async with running_server(settings, tmp_path / "first.log") as server:
            host = await open_page(browser, settings, page_url(host_socket), errors)
            guest = await open_page(browser, settings, page_url(public_socket), errors)
            await guest.get_by_label("Your name, as the others will see it").fill("Gail Guest")
            await guest.get_by_role("button", name="Use this name").click()
            await host.get_by_role("checkbox", name="Enable Moderator Role").check()
            await host.get_by_role("button", name="Start Conference").click()
            # Gail may use her microphone only; the host hears her but sees nothing of her.
            await host.get_by_role("combobox", name="What Gail Guest may use").select_option(
                "audio"
            )
            await (await only_sound_on(host)).grows()
            await (await video_of(guest, "Harriet Host")).grows()
            server.kill()
            await server.wait()
            await expect(
                host.get_by_role("status").filter(has_text="Reconnecting…")
            ).to_be_visible()

        async with running_server(settings, tmp_path / "second.log"):
            restarted = time.monotonic()
            gail_sees_host = await video_of(guest, "Harriet Host")
            await gail_sees_host.grows(within=BACK_WITHIN_SECONDS)
            host_hears_gail = await only_sound_on(host)
            await host_hears_gail.grows(within=BACK_WITHIN_SECONDS)
            assert time.monotonic() - restarted < BACK_WITHIN_SECONDS
            # As the host had set it: Gail's sound only, her controls showing that.
            await expect(
                guest.get_by_text("The moderator has turned off your camera.")
            ).to_be_visible()
            await expect(
                host.get_by_role("combobox", name="What Gail Guest may use")
            ).to_have_value("audio")
    assert errors == []
