"""Fixtures of the tests that speak to a live conference (its lobby, its media, its
recordings): the lobby's settings, where a closed page turns its holder Inactive after
one second, and participants made of real aiortc peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clinicconf.config import Forwarding, Settings

from ..support.lobby import GRACE_SECONDS
from ..support.media_peers import Join, MediaParticipant
from ..support.servers import LOOPBACK_ICE, Client


@pytest.fixture
def settings(tmp_path: Path, forwarding: Forwarding) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        presence_grace_seconds=GRACE_SECONDS,
        ice_addresses=LOOPBACK_ICE,
        forwarding=forwarding,
    )


@pytest.fixture
async def join(client: Client) -> AsyncIterator[Join]:
    """Open a page on `path` and say hello; `shade` is the participant's picture,
    `tone` what their microphone hears."""
    opened: list[MediaParticipant] = []

    async def join_(
        path: str, shade: int, lose_every: int | None = None, tone: int = 500, **hello: Any
    ) -> MediaParticipant:
        participant = MediaParticipant(await client.ws_connect(path), shade, lose_every, tone)
        opened.append(participant)
        await participant.hello(**hello)
        return participant

    yield join_
    for participant in opened:
        await participant.close()
