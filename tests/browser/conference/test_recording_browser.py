"""A recorded conference in Chromium, from the host's "Enable Recording" to the
recording playing on the patient's page: Sam Staff hosts, Pat (a patient) takes part,
Quinn arrives once it is under way and is told it is recorded before going in."""

from __future__ import annotations

from playwright.async_api import Page, expect

from ...support.accounts import Account
from ...support.browser import sign_in
from ...support.clinic import Clinic
from ...support.recorded_media import COMPOSE_SECONDS
from ...support.visitors import RECORD_PEER_CONNECTIONS, Links, Visitors, video_of

# How the page's <video> says it can play on (HTMLMediaElement.HAVE_ENOUGH_DATA).
HAVE_ENOUGH_DATA = 4


async def recording_ready(page: Page, clinic: Clinic) -> None:
    """The patient's page, reloaded until the recording on it is ready to play."""
    row = page.get_by_role("row").filter(has_text="Follow-up")
    for _ in range(COMPOSE_SECONDS):
        await page.goto(f"/patients/{clinic.pat.id}")
        await expect(row).to_be_visible()
        if "Ready" in await row.inner_text():
            return
        await page.wait_for_timeout(1000)
    raise AssertionError("the recording was not composed in time")


async def test_a_recorded_conference_plays_on_the_patients_page(
    visitors: Visitors, links: Links, clinic: Clinic, staff: Account
) -> None:
    host = await visitors.open(links.host, init_script=RECORD_PEER_CONNECTIONS)
    patient = await visitors.open(links.pat, init_script=RECORD_PEER_CONNECTIONS)
    await host.get_by_role("checkbox", name="Enable Recording").check()
    await expect(patient.get_by_text("This session will be recorded.")).to_be_visible()
    await host.get_by_role("button", name="Start Conference").click()
    # Pat goes in once she says so; the notice has the focus, then the conference does.
    consent = patient.get_by_role("region", name="This conference is being recorded")
    await expect(consent).to_be_focused()
    await patient.keyboard.press("Tab")
    await patient.keyboard.press("Enter")
    await expect(patient.get_by_role("heading", name="In the conference")).to_be_focused()
    for page in (host, patient):
        await expect(page.locator("#recording-indicator")).to_have_text("Recording")

    # Quinn comes in late and is told; the host pauses the recording meanwhile, and
    # resumes it: she is in only once she says so.
    quinn = await visitors.open(links.quinn)
    await expect(quinn.get_by_role("button", name="Join the recorded conference")).to_be_visible()
    await host.get_by_role("checkbox", name="Recording", exact=True).uncheck()
    await expect(patient.locator("#recording-indicator")).to_be_hidden()
    await expect(quinn.get_by_text("The recording is paused just now")).to_be_visible()
    await host.get_by_role("checkbox", name="Recording", exact=True).check()
    await expect(quinn.get_by_text("The recording is paused just now")).to_be_hidden()
    await expect(quinn.get_by_role("heading", name="In the conference")).to_be_hidden()
    await quinn.get_by_role("button", name="Join the recorded conference").click()
    await expect(quinn.locator("#recording-indicator")).to_have_text("Recording")

    # A few seconds of conference, with pictures going both ways.
    await (await video_of(host, "Pat Patient")).grows()
    await (await video_of(patient, "Sam Staff")).grows()
    await host.wait_for_timeout(3000)
    host.once("dialog", lambda dialog: dialog.accept())
    await host.get_by_role("button", name="End Conference for Everyone").click()
    await expect(patient.get_by_text("The host ended the conference.")).to_be_visible()

    # The host, signed in, finds it in Pat's record, and it plays.
    record = await host.context.new_page()
    await sign_in(record, staff)
    await recording_ready(record, clinic)
    row = record.get_by_role("row").filter(has_text="Follow-up")
    await expect(row).to_contain_text("Pat Patient")
    await row.get_by_role("link").click()
    player = record.get_by_label("Recording of Follow-up", exact=True)
    await expect(player).to_be_visible()
    await player.evaluate("video => { video.muted = true; return video.play(); }")
    await record.wait_for_function(
        "([video, ready]) => video.readyState >= ready && video.currentTime > 1",
        arg=[await player.element_handle(), HAVE_ENOUGH_DATA],
    )
