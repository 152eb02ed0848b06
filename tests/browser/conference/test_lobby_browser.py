"""The live Video Conference landing page in Chromium: a host, a patient and a public
guest on their own links at once, each in their own browser context (own cookies,
own storage), with Chromium's fake camera and microphone."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from aiohttp import web
from playwright.async_api import Locator, Page, expect

from clinicconf.schedule import EventInput

from ...support.accounts import Account
from ...support.clinic import Clinic
from ...support.visitors import WAITING, Links, Visitors, schedule

_TIME_LEFT = re.compile(r"Time Left: (?:(\d+) h )?(\d+) min (\d+) s")
# A computer clock ten minutes fast: "Time Left" must not follow it.
CLOCK_AHEAD = "const realNow = Date.now; Date.now = () => realNow() + 10 * 60 * 1000;"
# The person clicks "Block" when the browser asks for the camera and microphone
# (Chromium's fake media UI always allows).
# The server's "options" messages reach the page five seconds late (a slow network).
LATE_OPTIONS = """{
  const addEventListener = WebSocket.prototype.addEventListener;
  WebSocket.prototype.addEventListener = function (type, listener, ...rest) {
    if (type !== "message") return addEventListener.call(this, type, listener, ...rest);
    const late = (event) => {
      if (JSON.parse(event.data).type === "options") setTimeout(() => listener(event), 5000);
      else listener(event);
    };
    return addEventListener.call(this, type, late, ...rest);
  };
}"""
REFUSE_MEDIA = """navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));"""


async def change_event(
    clinic: Clinic,
    event_id: int,
    *,
    longer_by: timedelta = timedelta(0),
    without_patient: int | None = None,
) -> None:
    """Staff change the event: it lasts longer, or a patient is taken off."""
    event = await clinic.scheduler.get_event(event_id)
    await clinic.scheduler.update_event(
        clinic.staff,
        event.id,
        EventInput(
            event.title,
            event.event_type.id,
            event.start,
            event.end + longer_by,
            [staff.id for staff in event.staff],
            [p.id for p in event.patients if p.id != without_patient],
        ),
    )


async def seconds_left(page: Page) -> int:
    text = await page.get_by_role("timer").text_content() or ""
    match = _TIME_LEFT.fullmatch(text)
    assert match, text
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


async def test_the_host_sees_the_patient_come_and_go_then_starts_the_conference(
    visitors: Visitors, links: Links
) -> None:
    host = await visitors.open(links.host)
    active = host.get_by_role("list", name="Active", exact=True).get_by_role("listitem")
    inactive = host.get_by_role("list", name="Inactive").get_by_role("listitem")
    await expect(host.get_by_role("checkbox", name="Enable Moderator Role")).to_be_visible()
    await expect(
        host.get_by_text(
            "You choose whom everyone sees on screen and who may use audio, video, or neither."
        )
    ).to_be_visible()
    await expect(
        host.get_by_text("The session is recorded into the patient record.")
    ).to_be_visible()
    await expect(host.get_by_text(WAITING)).to_be_hidden()
    await expect(active).to_have_text(["Sam Staff You Staff"])
    await expect(inactive).to_have_text(["Pat Patient", "Quinn Quiet"])

    # The patient's computer clock is ten minutes fast: the server's clock counts.
    patient = await visitors.open(links.pat, init_script=CLOCK_AHEAD)
    await expect(active.filter(has_text="Pat Patient")).to_be_visible()
    await expect(inactive).to_have_text(["Quinn Quiet"])
    await expect(patient.get_by_text(WAITING)).to_be_visible()
    await expect(patient.get_by_text("Recording is off.")).to_be_visible()
    await expect(patient.get_by_role("button", name="Start Conference")).to_be_hidden()
    # A patient sees the staff and themselves, never another patient.
    await expect(patient.get_by_role("list", name="Active", exact=True)).to_contain_text(
        "Sam Staff"
    )
    await expect(patient.locator("#lobby")).not_to_contain_text("Quinn Quiet")

    before = await seconds_left(host)
    assert 29 * 60 < before <= 30 * 60
    assert abs(await seconds_left(patient) - before) <= 2
    await asyncio.sleep(1.5)
    assert 1 <= before - await seconds_left(host) <= 3

    await patient.close()
    await expect(inactive).to_have_text(["Pat Patient", "Quinn Quiet"])

    patient = await visitors.open(links.pat)
    await expect(active.filter(has_text="Pat Patient")).to_be_visible()
    await host.get_by_role("checkbox", name="Enable Recording").check()
    await expect(patient.get_by_text("This session will be recorded.")).to_be_visible()

    await host.get_by_role("button", name="Start Conference").click()
    # Told in the waiting room, Pat still goes in only by saying so.
    await patient.get_by_role("button", name="Join the recorded conference").click()
    in_conference = patient.get_by_role("heading", name="In the conference")
    await expect(in_conference).to_be_visible(timeout=1000)
    await expect(patient.get_by_text(WAITING)).to_be_hidden()
    await expect(patient.get_by_role("list", name="In the conference")).to_contain_text("Sam Staff")
    await expect(patient.get_by_text("Recording: on")).to_be_visible()
    await expect(patient.locator("#recording-indicator")).to_have_text("Recording")
    await expect(patient.get_by_text("Moderator mode: off")).to_be_visible()
    await expect(host.get_by_role("heading", name="In the conference")).to_be_visible()

    # Whoever arrives later goes straight in, once told that it is recorded.
    quinn = await visitors.open(links.quinn)
    await quinn.get_by_role("button", name="Join the recorded conference").click()
    await expect(quinn.get_by_role("heading", name="In the conference")).to_be_visible()
    await expect(quinn.get_by_text(WAITING)).to_be_hidden()


async def test_what_the_host_ticked_stays_ticked_while_others_arrive(
    visitors: Visitors, links: Links
) -> None:
    host = await visitors.open(links.host, init_script=LATE_OPTIONS)
    moderator = host.get_by_role("checkbox", name="Enable Moderator Role")
    await expect(moderator).to_be_enabled()
    await moderator.check()
    # The patient arrives before the server's options do: the page shows them ...
    await visitors.open(links.pat)
    active = host.get_by_role("list", name="Active", exact=True)
    await expect(active).to_contain_text("Pat Patient")
    # ... and still the box the host ticked, which the server's options then confirm.
    assert await moderator.is_checked()
    await host.wait_for_timeout(5_000)
    assert await moderator.is_checked()


async def test_a_public_guest_joins_under_a_display_name_and_sees_no_patient_names(
    visitors: Visitors, links: Links
) -> None:
    host = await visitors.open(links.host)
    host_active = host.get_by_role("list", name="Active", exact=True).get_by_role("listitem")
    await expect(host_active).to_have_count(1)

    guest = await visitors.open(links.public)
    await guest.get_by_label("Your name, as the others will see it").fill("Gail <i>Guest</i>")
    await guest.get_by_role("button", name="Use this name").click()
    await expect(guest.get_by_text(WAITING)).to_be_visible()
    await expect(guest.get_by_role("list", name="Active", exact=True)).to_contain_text("Sam Staff")
    await expect(guest.get_by_role("list", name="Inactive").get_by_role("listitem")).to_have_text(
        ["Patient", "Patient"]
    )
    await expect(guest.locator("body")).not_to_contain_text("Pat Patient")

    # The name is shown as typed, never as markup.
    await expect(host_active.filter(has_text="Gail <i>Guest</i>")).to_have_text(
        "Gail <i>Guest</i> Guest Remove"
    )
    await expect(host.locator("#active-people i")).to_have_count(0)

    await guest.close()
    await expect(host_active.filter(has_text="Gail")).to_have_count(0)


async def test_a_host_a_patient_and_a_guest_at_once(visitors: Visitors, links: Links) -> None:
    host = await visitors.open(links.host)
    patient = await visitors.open(links.pat)
    guest = await visitors.open(links.public)
    await guest.get_by_label("Your name, as the others will see it").fill("Gail Guest")
    await guest.get_by_role("button", name="Use this name").click()

    def active(page: Page) -> Locator:
        return page.get_by_role("list", name="Active", exact=True)

    await expect(active(host)).to_contain_text("Pat Patient")
    await expect(active(host)).to_contain_text("Gail Guest")
    await expect(active(guest)).to_contain_text("Patient")
    await expect(guest.locator("body")).not_to_contain_text("Pat Patient")
    await expect(active(patient)).to_contain_text("Sam Staff")
    await expect(active(patient)).to_contain_text("Guest")
    await expect(patient.locator("body")).not_to_contain_text("Gail Guest")

    await host.get_by_role("button", name="Start Conference").click()
    for page in (patient, guest):
        await expect(page.get_by_role("heading", name="In the conference")).to_be_visible()
        await expect(page.get_by_text(WAITING)).to_be_hidden()


async def test_a_page_reconnects_and_follows_a_changed_event(
    visitors: Visitors, links: Links, clinic: Clinic
) -> None:
    host = await visitors.open(links.host)
    await host.get_by_role("checkbox", name="Enable Recording").check()
    assert await seconds_left(host) <= 30 * 60
    # The server closes the pages of a changed event; each comes back for the new picture.
    await change_event(clinic, links.event_id, longer_by=timedelta(minutes=30))
    reconnecting = host.get_by_role("status").filter(has_text="Reconnecting…")
    await expect(reconnecting).to_be_visible()
    await expect(reconnecting).to_be_hidden()
    assert await seconds_left(host) > 59 * 60
    # Still the host, and the option chosen before is kept.
    await expect(host.get_by_role("checkbox", name="Enable Recording")).to_be_checked()
    await expect(host.get_by_role("button", name="Start Conference")).to_be_enabled()


async def test_a_cancelled_event_closes_the_open_pages(
    visitors: Visitors, links: Links, clinic: Clinic
) -> None:
    patient = await visitors.open(links.pat)
    await expect(patient.get_by_text(WAITING)).to_be_visible()
    await clinic.scheduler.cancel_event(clinic.staff, links.event_id)
    await expect(patient.get_by_role("alert")).to_have_text("This conference was cancelled.")
    # The news takes the focus, so that a keyboard or screen-reader user is at it.
    await expect(patient.get_by_role("alert")).to_be_focused()
    await expect(patient.get_by_text(WAITING)).to_be_hidden()
    await expect(patient.get_by_role("timer")).to_be_hidden()


async def test_the_camera_preview_plays_the_chosen_camera(visitors: Visitors, links: Links) -> None:
    patient = await visitors.open(links.pat)
    await patient.wait_for_function(
        "() => document.getElementById('preview-video').videoWidth > 0", timeout=5000
    )
    await expect(patient.get_by_label("Camera", exact=True).locator("option")).not_to_have_count(0)
    await expect(
        patient.get_by_label("Microphone", exact=True).locator("option")
    ).not_to_have_count(0)
    # Browsers start audio only once the person has used the page; the fake
    # microphone's tone then moves the level bar.
    await patient.get_by_role("heading", name="Your camera and microphone").click()
    await patient.wait_for_function(
        "() => document.getElementById('microphone-level').value > 0", timeout=5000
    )


async def test_a_refused_camera_is_explained(visitors: Visitors, links: Links) -> None:
    patient = await visitors.open(links.pat, init_script=REFUSE_MEDIA)
    await expect(patient.locator("#preview-message")).to_contain_text(
        "The browser did not allow this page to use your camera and microphone."
    )
    # The rest of the page works without a camera.
    await expect(patient.get_by_text(WAITING)).to_be_visible()


async def test_before_the_start_the_page_says_when_it_starts(
    visitors: Visitors, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    soon = await schedule(app, clinic, staff, start_in=10)
    patient = await visitors.open(soon.pat)
    await expect(patient.get_by_role("timer")).to_have_text(re.compile(r"Starts in (9|10) min"))


async def test_someone_taken_off_the_event_is_told_and_stops_reconnecting(
    visitors: Visitors, links: Links, clinic: Clinic
) -> None:
    patient = await visitors.open(links.pat)
    await expect(patient.get_by_text(WAITING)).to_be_visible()
    await change_event(clinic, links.event_id, without_patient=clinic.pat.id)
    await expect(patient.get_by_role("alert")).to_have_text(
        "This link no longer works. Please ask the clinic for a new one."
    )
    await expect(patient.get_by_role("status").filter(has_text="Reconnecting…")).to_be_hidden()
