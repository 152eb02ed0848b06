"""Fixtures of a Public Conference in Chromium: the served settings, where a closed
page turns its holder Inactive after one second instead of fifteen. (The Chromium
tests one directory up set settings of their own over the suite's.)"""

from __future__ import annotations

import dataclasses

import pytest

from clinicconf.config import Settings

from ...support.browser import served_settings


@pytest.fixture
def settings(settings: Settings, unused_tcp_port: int) -> Settings:
    # A closed page turns its holder Inactive after one second instead of fifteen.
    return dataclasses.replace(served_settings(settings, unused_tcp_port), presence_grace_seconds=1)
