"""Fixtures of the tests of events and recordings as the clinic's staff reach them:
the clinic's own time zone, and encoded media to write recordings from."""

from __future__ import annotations

import dataclasses

import pytest

from clinicconf.bench import clip
from clinicconf.config import Settings

from ..support.clinic import CLINIC_ZONE
from ..support.recordings import Media


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, time_zone=CLINIC_ZONE)


@pytest.fixture(scope="module")
def media() -> Media:
    """Encoded once for the module."""
    return {"video": clip.encode_video(0.4), "audio": clip.encode_audio(0.4)}
