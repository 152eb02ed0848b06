"""A Public Conference's links and the people who open them, each in a Chromium
context of their own; what a page's peer connection receives from whom."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from playwright.async_api import Browser, Page, expect

from clinicconf import keys
from clinicconf.config import Settings
from clinicconf.links import LinkKind

from .accounts import Account
from .browser import new_context, watch_errors
from .clinic import CLINIC_ZONE, Clinic

# What a page says while the host has not started.
WAITING = "Waiting for the host to start the conference"


@dataclass(frozen=True)
class Links:
    """The join links of a Public Conference."""

    event_id: int
    host: str  # Sam Staff's
    pat: str
    quinn: str
    public: str


async def schedule(app: web.Application, clinic: Clinic, staff: Account, start_in: int) -> Links:
    """A Public Conference with Sam Staff, Pat and Quinn, starting `start_in` minutes
    from now (negative: that long ago) and ending 30 minutes from now."""
    now = datetime.now(ZoneInfo(CLINIC_ZONE)).replace(tzinfo=None, microsecond=0)
    saved = await clinic.event(
        "Follow-up",
        clinic.group,
        (now + timedelta(minutes=start_in)).isoformat(),
        (now + timedelta(minutes=30)).isoformat(),
        patients=[clinic.pat, clinic.quinn],
    )
    event_id = saved.event.id

    async def url(kind: LinkKind, person_id: int | None) -> str:
        found = await clinic.scheduler.links.url_for(app[keys.DATABASE], event_id, kind, person_id)
        assert found is not None
        return found

    return Links(
        event_id,
        host=await url("staff", staff.id),
        pat=await url("patient", clinic.pat.id),
        quinn=await url("patient", clinic.quinn.id),
        public=await url("public", None),
    )


class Visitors:
    """People opening links, each in a browser context of their own."""

    def __init__(self, browser: Browser, settings: Settings) -> None:
        self._browser = browser
        self._settings = settings
        self.errors: list[str] = []

    async def open(self, url: str, *, init_script: str = "") -> Page:
        context = await new_context(self._browser, self._settings)
        if init_script:
            await context.add_init_script(init_script)
        page = await context.new_page()
        watch_errors(page, self.errors)
        await page.goto(url)
        return page


# Keeps the page's peer connections where the test can read their statistics.
RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
})();
"""
# How much has arrived on an m-line: video frames decoded, or audio bytes received.
RECEIVED_ON_MID = """
async ([mid, kind]) => {
  const pc = window.peerConnections.at(-1);
  if (!pc) return 0;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "inbound-rtp" && report.mid === mid) {
      return kind === "video" ? report.framesDecoded ?? 0 : report.bytesReceived ?? 0;
    }
  }
  return 0;
}
"""
SETTLE_SECONDS = 1.0


class Received:
    """What one page receives of one other participant's video or audio."""

    def __init__(self, page: Page, mid: str, kind: str) -> None:
        self.page, self.mid, self.kind = page, mid, kind

    async def count(self) -> int:
        return int(await self.page.evaluate(RECEIVED_ON_MID, [self.mid, self.kind]))

    async def grows(self, within: float = 15.0) -> float:
        """Wait until more arrives; how long that took, in seconds."""
        began = time.monotonic()
        before = await self.count()
        while await self.count() <= before:
            assert time.monotonic() - began < within, f"nothing more on {self.kind} {self.mid}"
            await asyncio.sleep(0.1)
        return time.monotonic() - began

    async def stopped(self) -> bool:
        """Nothing more arrives, once what was in flight has landed."""
        await asyncio.sleep(SETTLE_SECONDS)
        before = await self.count()
        await asyncio.sleep(SETTLE_SECONDS)
        return await self.count() == before


async def video_of(page: Page, name: str) -> Received:
    """The video tile of `name` on `page`, once it shows."""
    tile = page.locator("figure.tile[data-mid]").filter(has_text=name)
    await expect(tile).to_be_visible(timeout=15_000)
    mid = await tile.get_attribute("data-mid")
    assert mid is not None
    return Received(page, mid, "video")
