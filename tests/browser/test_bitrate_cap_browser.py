"""The cap on what a camera sends (`max_video_bitrate`), in Chromium: the server's
REMB feedback, sent from the camera's first packets on, keeps the browser's own
target under it. Chromium starts a video at about 300 kbit/s and climbs from there,
so a cap of 150 kbit/s must hold it down."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from playwright.async_api import Page, expect

from clinicconf.config import Settings

from ..support.browser import served_settings
from ..support.visitors import RECORD_PEER_CONNECTIONS, Links, Visitors

CAP = 150_000
# What the browser aims to send on its camera's m-line, in bits per second.
TARGET_BITRATE = """
async () => {
  const pc = window.peerConnections.at(-1);
  if (!pc) return null;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "outbound-rtp" && report.kind === "video" && report.targetBitrate) {
      return report.targetBitrate;
    }
  }
  return null;
}
"""


@pytest.fixture(params=[CAP, Settings.max_video_bitrate], ids=["capped", "uncapped"])
def settings(settings: Settings, unused_tcp_port: int, request: pytest.FixtureRequest) -> Settings:
    served = served_settings(settings, unused_tcp_port)
    return dataclasses.replace(served, max_video_bitrate=request.param)


async def target_bitrate(page: Page) -> float | None:
    value = await page.evaluate(TARGET_BITRATE)
    return None if value is None else float(value)


async def test_a_camera_sends_no_more_than_the_cap(
    visitors: Visitors, links: Links, settings: Settings
) -> None:
    """Capped, the patient's camera aims under the cap; with the default cap, the
    same camera aims above it (so the cap, not the camera, is what holds it)."""
    host = await visitors.open(links.host, init_script=RECORD_PEER_CONNECTIONS)
    patient = await visitors.open(links.pat, init_script=RECORD_PEER_CONNECTIONS)
    await expect(host.get_by_role("list", name="Active", exact=True)).to_contain_text("Pat")
    await host.get_by_role("button", name="Start Conference").click()
    await expect(patient.locator("figure.tile[data-mid]")).to_be_visible(timeout=15_000)

    capped = settings.max_video_bitrate == CAP
    seen: list[float | None] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen.append(await target_bitrate(patient))
        if seen[-1] is not None and (seen[-1] <= CAP) == capped and len(seen) > 4:
            break
        await asyncio.sleep(0.5)
    if capped:
        assert seen[-1] is not None and seen[-1] <= CAP, seen
    else:
        assert any(value is not None and value > CAP for value in seen), seen
