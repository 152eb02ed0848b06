"""Nothing a page does leaves a socket open in the server: media connections replaced
while their offers are still gathering candidates, by two tabs of one person pressing
join again and again, are all closed once the conference has ended. The server runs in
the test's process, so its UDP sockets are this process's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp import web

from clinicconf import keys

from ...support.lobby import Lobby, Page

# Below the landing page's flood limit (20 messages in 5 s) for each tab.
JOINS_PER_TAB = 12


def udp_sockets() -> set[str]:
    """The inodes of the UDP sockets this process holds open."""
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            udp.add(line.split()[9])
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the directory's own descriptor, closed meanwhile
            continue
        if target.startswith("socket:["):
            held.add(target.removeprefix("socket:[").removesuffix("]"))
    return held & udp


async def join_again_and_again(tabs: list[Page]) -> None:
    """Every tab sends its joins at once, without waiting for an answer or an offer;
    each join replaces the connection the one before it is still offering on."""
    sent: dict[Page, list[int]] = {tab: [] for tab in tabs}
    for _ in range(JOINS_PER_TAB):
        for tab in tabs:
            sent[tab].append(await tab.send("join_media"))
    for tab, ids in sent.items():
        for message_id in ids:
            answer = await answer_to(tab, message_id)
            assert answer["type"] == "result", answer


async def answer_to(tab: Page, message_id: int) -> dict[str, Any]:
    while True:
        message = await tab.receive()
        if message["type"] in ("result", "error") and message["id"] == message_id:
            return message


async def test_replaced_media_connections_leave_no_socket_open(
    lobby: Lobby, open_page: Any, app: web.Application
) -> None:
    host, _ = await open_page(lobby.host_path)
    first_tab, _ = await open_page(lobby.pat_path)
    second_tab, _ = await open_page(lobby.pat_path)
    assert (await host.request("start"))["type"] == "result"
    before = udp_sockets()

    await join_again_and_again([host, first_tab, second_tab])
    offered = udp_sockets() - before
    assert offered  # the media connections did gather on their sockets

    await host.send("end")
    # The conference closes every media connection before it closes the pages.
    for page in (host, first_tab, second_tab):
        assert await page.closed() == 4411
    conference = app[keys.CONFERENCES].get(lobby.event_id)
    assert conference is not None and not conference.room.present
    assert udp_sockets() - before == set()
