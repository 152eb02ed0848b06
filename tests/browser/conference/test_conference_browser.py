"""A conference in Chromium, end to end: Sam Staff hosts in moderator mode, Pat
(a patient) and Gail (a public guest) join on their links, each in a browser
context of their own with Chromium's fake camera and microphone. What each
receives is read from the browser's own WebRTC statistics: decoded video frames and
received audio bytes per m-line."""

from __future__ import annotations

from playwright.async_api import Page, expect

from ...support.visitors import RECORD_PEER_CONNECTIONS, Links, Received, Visitors, video_of


async def audio_of(page: Page, name: str) -> Received:
    """The sound of whoever's tile says `name`."""
    tile = page.locator("figure.tile[data-mid]").filter(has_text=name)
    participant = await tile.get_attribute("data-participant")
    audio = page.locator(f'audio[data-participant="{participant}"]')
    mid = await audio.get_attribute("data-mid")
    assert mid is not None
    return Received(page, mid, "audio")


async def test_three_people_hold_a_moderated_conference(visitors: Visitors, links: Links) -> None:
    host = await visitors.open(links.host, init_script=RECORD_PEER_CONNECTIONS)
    patient = await visitors.open(links.pat, init_script=RECORD_PEER_CONNECTIONS)
    guest = await visitors.open(links.public, init_script=RECORD_PEER_CONNECTIONS)
    await guest.get_by_label("Your name, as the others will see it").fill("Gail Guest")
    await guest.get_by_role("button", name="Use this name").click()
    await expect(host.get_by_role("list", name="Active", exact=True)).to_contain_text("Gail Guest")

    await host.get_by_role("checkbox", name="Enable Moderator Role").check()
    await host.get_by_role("button", name="Start Conference").click()
    # The staff are on screen from the start: once the server routes Sam's video to
    # Pat's page (its tile appears), the picture shows within two seconds (the media
    # connection comes up, a keyframe is asked for and forwarded). Opening the page's
    # camera before that is the browser's own time, longer on a loaded machine.
    pat_sees_sam = await video_of(patient, "Sam Staff")
    assert await pat_sees_sam.grows(within=2.0) < 2.0
    # A public guest may use neither audio nor video until the host allows it; the
    # host allows Gail and puts everyone on screen.
    await expect(
        guest.get_by_text("The moderator has turned off your microphone and camera.")
    ).to_be_visible()
    await host.get_by_role("combobox", name="What Gail Guest may use").select_option("audio_video")
    for name in ("Pat Patient", "Gail Guest"):
        await host.get_by_role("checkbox", name=f"Show {name} on screen").check()

    # Everyone receives the two others' video; names follow the privacy rules.
    host_sees_pat = await video_of(host, "Pat Patient")
    host_sees_gail = await video_of(host, "Gail Guest")
    pat_sees_gail = await video_of(patient, "Guest")
    gail_sees_sam = await video_of(guest, "Sam Staff")
    gail_sees_pat = await video_of(guest, "Patient")
    for received in (
        host_sees_pat, host_sees_gail, pat_sees_sam, pat_sees_gail, gail_sees_sam, gail_sees_pat
    ):  # fmt: skip
        await received.grows()
    await expect(patient.locator("#conference")).not_to_contain_text("Gail Guest")
    # In the conference, a guest's name is set: the form to change it is gone.
    await expect(guest.get_by_role("button", name="Change my name")).to_be_hidden()

    # The host takes Gail off screen: Pat's picture of her stops, the host's goes on.
    await host.get_by_role("checkbox", name="Show Gail Guest on screen").uncheck()
    assert await pat_sees_gail.stopped()
    await host_sees_gail.grows()
    await expect(host.locator("figure.tile").filter(has_text="Gail Guest")).to_contain_text(
        "Not on screen"
    )
    await expect(patient.locator("figure.tile").filter(has_text="Guest")).to_have_count(0)

    # The host withholds Pat's audio: neither the host nor Gail hears her any more,
    # while her video still reaches them; Pat is told.
    host_hears_pat = await audio_of(host, "Pat Patient")
    gail_hears_pat = await audio_of(guest, "Patient")
    await host_hears_pat.grows()
    await host.get_by_role("combobox", name="What Pat Patient may use").select_option("video")
    assert await host_hears_pat.stopped()
    assert await gail_hears_pat.stopped()
    await host_sees_pat.grows()
    await expect(
        patient.get_by_text("The moderator has turned off your microphone.")
    ).to_be_visible()

    # Gail back on screen: Pat sees her again, at once.
    await host.get_by_role("checkbox", name="Show Gail Guest on screen").check()
    assert await pat_sees_gail.grows(within=2.0) < 2.0


async def test_a_lost_media_connection_is_taken_up_again_without_a_touch(
    visitors: Visitors, links: Links
) -> None:
    host = await visitors.open(links.host, init_script=RECORD_PEER_CONNECTIONS)
    patient = await visitors.open(links.pat, init_script=RECORD_PEER_CONNECTIONS)
    await host.get_by_role("button", name="Start Conference").click()
    await (await video_of(patient, "Sam Staff")).grows()

    async def lose_the_connection() -> int:
        """Pat's media connection ends under her page, as when her network drops: the
        server notices (its end is closed) and tells the page. Returns how many
        connections the page had opened."""
        count: int = await patient.evaluate("window.peerConnections.length")
        await patient.evaluate("window.peerConnections.at(-1).close()")
        return count

    # The page joins again by itself: Sam's picture comes back on a new connection.
    connections = await lose_the_connection()
    await patient.wait_for_function("n => window.peerConnections.length > n", arg=connections)
    await (await video_of(patient, "Sam Staff")).grows()
    await expect(patient.get_by_role("button", name="Try again")).to_be_hidden()

    # Lost again within the minute: the page says so and leaves it to Pat.
    connections = await lose_the_connection()
    await expect(
        patient.get_by_text("The connection to the media server was lost.")
    ).to_be_visible()
    await patient.get_by_role("button", name="Try again").click()
    await patient.wait_for_function("n => window.peerConnections.length > n", arg=connections)
    await (await video_of(patient, "Sam Staff")).grows()
