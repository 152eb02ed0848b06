"""The Scheduler and the event pages in Debian's Chromium, driven by Playwright:
what staff see and do, including the right-click menus and the clipboard."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect

from clinicconf import keys
from clinicconf.config import Settings

from ..support.accounts import STAFF_PASSWORD, Account, make_account
from ..support.browser import chromium, new_context, served_settings, sign_in, watch_errors
from ..support.clinic import Clinic

EVENT_MENU = ["Join Conference", "Cancel Conference", "Get My Conference Link"]
PUBLIC_EVENT_MENU = [
    "Join Conference",
    "Cancel Conference",
    "Get Public Conference Link",
    "Get My Conference Link",
]
PATIENT_MENU = [
    "Copy Patient Join Link to Clipboard",
    "Send Patient Join Link by SMS",
    "Send Patient Join Link by Email",
]


@pytest.fixture
def settings(settings: Settings, unused_tcp_port: int) -> Settings:
    return served_settings(settings, unused_tcp_port)


@pytest.fixture
async def page(
    settings: Settings, client: TestClient[web.Request, web.Application]
) -> AsyncIterator[Page]:
    errors: list[str] = []
    async with chromium() as browser:
        context = await new_context(browser, settings, ["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        watch_errors(page, errors)
        yield page
    assert errors == []


async def clipboard(page: Page) -> str:
    text: str = await page.evaluate("navigator.clipboard.readText()")
    return text


async def test_create_an_event_then_copy_a_patients_join_link(
    page: Page, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    await sign_in(page, staff)
    await page.get_by_role("link", name="New event").click()
    await page.get_by_label("Title").fill("Follow-up")
    await page.get_by_label("Event type").select_option(label="Telehealth")
    await expect(page.get_by_label("Patient record")).to_be_hidden()
    await page.get_by_label("Starts").fill("2030-05-06T10:00")
    await page.get_by_label("Ends").fill("2030-05-06T10:30")
    await page.get_by_label("Pat Patient").check()
    await page.get_by_label("Quinn Quiet").check()
    await page.get_by_role("button", name="Create event").click()
    # The menus work once the page's scripts have run: wait for the whole page.
    await page.wait_for_url(re.compile(r"/events/\d+\?saved=1$"))

    confirmation = page.locator(".notice", has_text="Invitation emails will be sent to:")
    await expect(confirmation.get_by_role("listitem")).to_have_text(["Sam Staff", "Pat Patient"])
    await expect(confirmation).to_contain_text("No email address on file for: Quinn Quiet")
    event_id = int(re.findall(r"/events/(\d+)", page.url)[0])

    patients = page.get_by_role("list", name="Patients")
    await patients.get_by_role("listitem").filter(has_text="Pat Patient").click(button="right")
    menu = page.get_by_role("menu")
    await expect(menu.get_by_role("menuitem")).to_have_text(PATIENT_MENU)
    await menu.get_by_role("menuitem", name="Copy Patient Join Link to Clipboard").click()
    await expect(page.locator("#toast")).to_have_text("Patient Join Link copied to clipboard")
    await expect(menu).to_have_count(0)
    link = await clinic.scheduler.links.url_for(
        app[keys.DATABASE], event_id, "patient", clinic.pat.id
    )
    assert await clipboard(page) == link

    await patients.get_by_role("listitem").filter(has_text="Pat Patient").click(button="right")
    await menu.get_by_role("menuitem", name="Send Patient Join Link by SMS").click()
    await expect(page.locator("#toast")).to_have_text(
        "Join link will be sent to Pat Patient by SMS"
    )

    # Quinn has neither phone nor email: those entries say why they cannot be used.
    await patients.get_by_role("listitem").filter(has_text="Quinn Quiet").click(button="right")
    by_sms = menu.get_by_role("menuitem", name="Send Patient Join Link by SMS")
    await expect(by_sms).to_have_attribute("aria-disabled", "true")
    await expect(by_sms).to_have_accessible_description("No phone number on file.")


async def test_scheduler_event_menus(
    page: Page, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    group = await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[clinic.pat]
    )
    await clinic.event(
        "Check-in", clinic.telehealth, "2030-05-07T09:00", "2030-05-07T09:30", patients=[]
    )
    await sign_in(page, staff)
    await page.goto("/?week=2030-05-06")
    menu = page.get_by_role("menu")

    await page.locator(".event-block", has_text="Check-in").click(button="right")
    await expect(menu.get_by_role("menuitem")).to_have_text(EVENT_MENU)
    await page.keyboard.press("Escape")
    await expect(menu).to_have_count(0)

    await page.locator(".event-block", has_text="Group").click(button="right")
    await expect(menu.get_by_role("menuitem")).to_have_text(PUBLIC_EVENT_MENU)
    await menu.get_by_role("menuitem", name="Get Public Conference Link").click()
    await expect(page.locator("#toast")).to_have_text("Public Conference Link copied to clipboard")
    db = app[keys.DATABASE]
    assert await clipboard(page) == await clinic.scheduler.links.url_for(
        db, group.event.id, "public", None
    )

    await page.locator(".event-block", has_text="Group").click(button="right")
    await menu.get_by_role("menuitem", name="Join Conference").click()
    await page.wait_for_url("**/j/*")
    assert page.url == await clinic.scheduler.links.url_for(db, group.event.id, "staff", staff.id)

    await page.goto("/?week=2030-05-06")
    await page.locator(".event-block", has_text="Group").click(button="right")
    await menu.get_by_role("menuitem", name="Cancel Conference").click()
    await page.get_by_role("button", name="Cancel Conference").click()
    await page.wait_for_url(re.compile(r"/events/\d+\?cancelled=1$"))
    await expect(
        page.get_by_role("status").filter(has_text="This conference was cancelled")
    ).to_be_visible()

    await page.goto("/?week=2030-05-06")
    cancelled = page.locator(".event-block", has_text="Group")
    await expect(cancelled).to_contain_text("Cancelled")
    await cancelled.click(button="right")
    join = menu.get_by_role("menuitem", name="Join Conference")
    await expect(join).to_have_attribute("aria-disabled", "true")
    await expect(join).to_have_accessible_description("This conference is cancelled.")
    await join.click(force=True)
    await expect(menu).to_be_visible()  # a disabled entry does nothing


async def test_menus_open_and_work_from_the_keyboard(
    page: Page, app: web.Application, clinic: Clinic, staff: Account
) -> None:
    saved = await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[clinic.pat]
    )
    await sign_in(page, staff)
    await page.goto("/?week=2030-05-06")
    menu = page.get_by_role("menu")
    items = menu.get_by_role("menuitem")

    event_link = page.get_by_role("link", name=re.compile("Group"))
    await event_link.focus()
    await page.keyboard.press("Shift+F10")
    await expect(items.nth(0)).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(items.nth(1)).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("ArrowUp")
    await expect(items.nth(3)).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(menu).to_have_count(0)
    await expect(event_link).to_be_focused()

    button = page.get_by_role("button", name="Links for Group")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("End")
    await expect(items.nth(3)).to_have_text("Get My Conference Link")
    await page.keyboard.press("Enter")
    await expect(page.locator("#toast")).to_have_text("Your Conference Link copied to clipboard")
    await expect(button).to_be_focused()
    assert await clipboard(page) == await clinic.scheduler.links.url_for(
        app[keys.DATABASE], saved.event.id, "staff", staff.id
    )

    # On the event page, the ContextMenu key on a focused person.
    await page.goto(f"/events/{saved.event.id}")
    patient = page.get_by_role("list", name="Patients").get_by_role("listitem")
    await patient.focus()
    await page.keyboard.press("ContextMenu")
    await expect(items).to_have_text(PATIENT_MENU)
    await page.keyboard.press(" ")
    await expect(page.locator("#toast")).to_have_text("Patient Join Link copied to clipboard")
    await expect(patient).to_be_focused()


async def test_a_colleagues_event_offers_its_conference_menu_disabled_saying_why(
    page: Page, app: web.Application, clinic: Clinic
) -> None:
    """Olive is not on Sam's event: she may not join it as a host or hand out its links
    (issue 13), and its menu says so rather than ending in an error."""
    await clinic.event(
        "Group", clinic.group, "2030-05-06T10:00", "2030-05-06T11:00", patients=[clinic.pat]
    )
    olive = await make_account(app, "Olive Other", "olive@clinic.test", STAFF_PASSWORD, admin=False)
    await sign_in(page, olive)
    await page.goto("/?week=2030-05-06")
    await page.locator(".event-block", has_text="Group").click(button="right")
    menu = page.get_by_role("menu")
    await expect(menu.get_by_role("menuitem")).to_have_count(len(PUBLIC_EVENT_MENU))
    for item in PUBLIC_EVENT_MENU:
        entry = menu.get_by_role("menuitem", name=item)
        await expect(entry).to_have_attribute("aria-disabled", "true")
        await expect(entry).to_have_accessible_description(
            "Only the event's staff and administrators can do this."
        )
    await menu.get_by_role("menuitem", name="Join Conference").click(force=True)
    await expect(menu).to_be_visible()  # nothing was asked of the server
