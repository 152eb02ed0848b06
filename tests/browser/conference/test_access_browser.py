"""The host's say over the public link, in Chromium: a guest waits in the waiting
room until let in, and someone removed is told so and stays out."""

from __future__ import annotations

from playwright.async_api import Page, expect

from ...support.visitors import Links, Visitors


async def name_myself(guest: Page, name: str) -> None:
    await guest.get_by_label("Your name, as the others will see it").fill(name)
    await guest.get_by_role("button", name="Use this name").click()


async def test_a_guest_waits_until_let_in_and_a_removed_one_stays_out(
    visitors: Visitors, links: Links
) -> None:
    host = await visitors.open(links.host)
    await host.get_by_role("checkbox", name="Waiting room").check()

    gail = await visitors.open(links.public)
    await name_myself(gail, "Gail Guest")
    await expect(gail.get_by_text("You are in the waiting room.")).to_be_visible()
    await expect(gail.get_by_text("Sam Staff")).to_be_hidden()  # nobody is shown to her yet
    waiting = host.get_by_role("list", name="Waiting to come in")
    await expect(waiting).to_contain_text("Gail Guest")
    await host.get_by_role("button", name="Let Gail Guest in").click()
    await expect(gail.get_by_role("list", name="Active", exact=True)).to_contain_text("Sam Staff")
    await expect(gail.get_by_text("You are in the waiting room.")).to_be_hidden()
    await expect(waiting).to_be_hidden()

    host.once("dialog", lambda dialog: dialog.accept())
    active = host.get_by_role("list", name="Active", exact=True)
    await active.get_by_role("button", name="Remove Gail Guest").click()
    await expect(gail.get_by_text("You were removed from this conference.")).to_be_visible()
    await expect(active).not_to_contain_text("Gail Guest")
    await gail.reload()
    await expect(gail.get_by_text("You were removed from this conference.")).to_be_visible()

    # Locked: a newcomer is told so.
    await host.get_by_role("checkbox", name="Waiting room").uncheck()
    await host.get_by_role("checkbox", name="Lock the conference").check()
    newcomer = await visitors.open(links.public)
    await name_myself(newcomer, "Nina New")
    await expect(newcomer.get_by_text("This conference is locked")).to_be_visible()
