"""A patient is told when an outsider is in the conference (issue 13, item 4): every
public guest is in the patient's people list and on their video tiles as "Guest",
never by the name the guest typed, while the staff still see the name."""

from __future__ import annotations

import json
from typing import Any

from ...support.lobby import Lobby, by_name
from ...support.media_peers import Join, three_in_conference
from ...support.servers import wait_until


async def test_a_patient_sees_each_guest_arrive_and_leave_as_guest(
    lobby: Lobby, open_page: Any
) -> None:
    pat, _ = await open_page(lobby.pat_path)
    gail, _ = await open_page(lobby.public_path, display_name="Gail Guest")
    arrived = await pat.presence()
    assert (arrived["kind"], arrived["name"], arrived["anonymous"], arrived["active"]) == (
        "guest", "Guest", True, True,
    )  # fmt: skip

    # A patient arriving later finds both guests in the welcome, unnamed.
    await open_page(lobby.public_path, display_name="Gus Other")
    _, quinn_sees = await open_page(lobby.quinn_path)
    guests = [p for p in quinn_sees["participants"] if p["kind"] == "guest"]
    assert [(p["name"], p["anonymous"], p["active"]) for p in guests] == [("Guest", True, True)] * 2
    assert "Gail Guest" not in json.dumps(quinn_sees) and "Gus Other" not in json.dumps(quinn_sees)

    await gail.send("leave")
    while (left := await pat.presence())["id"] != arrived["id"]:
        pass
    assert (left["name"], left["active"]) == ("Guest", False)
    said_to_pat = json.dumps(pat.passed_over)
    assert "Gail Guest" not in said_to_pat and "Gus Other" not in said_to_pat


async def test_the_staff_still_see_a_guest_by_name(lobby: Lobby, open_page: Any) -> None:
    await open_page(lobby.public_path, display_name="Gail Guest")
    _, host_sees = await open_page(lobby.host_path)
    gail = by_name(host_sees)["Gail Guest"]
    assert (gail["kind"], gail["anonymous"]) == ("guest", False)


async def test_a_patients_video_tile_of_a_guest_says_guest(lobby: Lobby, join: Join) -> None:
    three = await three_in_conference(lobby, join, moderator=False)
    host, patient, guest = three.everyone

    async def both_named() -> bool:
        return len({t["participant"] for t in patient.tracks.values()}) == 2

    await wait_until(both_named)
    names = {t["participant"]: t["name"] for t in patient.tracks.values()}
    assert names == {host.id: "Ada Admin", guest.id: "Guest"}
