"""Every name a person types is shown to others as what it is: no invisible, control
or bidirectional characters, and no name that is empty once they are taken out
(src/clinicconf/names.py). Through the real app: a guest's display name on the
websocket, and the names staff enter for patients and staff members."""

from __future__ import annotations

from typing import Any

import pytest

from ...support.accounts import Account
from ...support.api import api
from ...support.lobby import Lobby, Page, by_name
from ...support.servers import Client

# "Ada Admin" typed backwards behind a right-to-left override reads as "Ada Admin".
POSING_AS_THE_HOST = "\u202enimdA adA"
# Each looks like no name at all: zero-width space and joiner, an isolate, a
# control character, a Hangul filler (a letter that draws nothing), a soft hyphen.
NAMELESS = ("\u200b\u200d", "\u2066\u2069 \u0007", "\u3164", "\u00ad\u00ad")


async def test_a_guest_cannot_pose_behind_a_bidirectional_override(
    lobby: Lobby, open_page: Any
) -> None:
    host, _ = await open_page(lobby.host_path)
    await open_page(lobby.public_path, display_name=POSING_AS_THE_HOST)
    arrived = await host.presence()
    assert arrived["name"] == "nimdA adA"
    _, later = await open_page(lobby.host_path)
    assert "Ada Admin" in by_name(later) and by_name(later)["Ada Admin"]["kind"] == "staff"
    assert by_name(later)["nimdA adA"]["kind"] == "guest"


async def test_a_guest_cannot_join_nameless(client: Client, lobby: Lobby) -> None:
    page = Page(await client.ws_connect(lobby.public_path))
    for name in NAMELESS:
        answer = await page.request("hello", client_key="k" * 20, display_name=name)
        assert answer["code"] == "bad_message", name
    await page.send("hello", client_key="k" * 20, display_name="\u200bGail\u200b Guest\u0000")
    assert (await page.receive("welcome"))["you"]["name"] == "Gail Guest"
    await page.ws.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/patients", {"record_number": "R-5"}),
        ("/staff", {"email": "grace@clinic.test"}),
    ],
)
async def test_staff_cannot_enter_a_nameless_or_disguised_person(
    client: Client, admin: Account, path: str, body: dict[str, str]
) -> None:
    for name in NAMELESS:
        status, answer = await api(client, admin, "POST", path, body | {"name": name})
        assert status == 422, name
        assert answer["error"]["field"] == "name"
    status, created = await api(client, admin, "POST", path, body | {"name": "\u202eGrace\tHo"})
    assert status == 201
    assert created["name"] == "Grace Ho"
    status, listed = await api(client, admin, "GET", path)
    assert "Grace Ho" in {p["name"] for p in listed}


@pytest.mark.parametrize("disguised", ["grace\u202e@clinic.test", "gr\u200bace@clinic.test"])
async def test_an_email_address_cannot_hide_or_turn_its_text(
    client: Client, admin: Account, disguised: str
) -> None:
    body = {"name": "Grace Ho", "email": disguised}
    status, answer = await api(client, admin, "POST", "/staff", body)
    assert status == 422
    assert answer["error"]["field"] == "email"
