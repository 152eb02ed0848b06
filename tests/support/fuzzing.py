"""What the Hypothesis tests share: the same inputs on every run, in CI too (drawn
from a fixed seed, no example database carried between runs), and no deadline per
example (a real server, aiortc peer or browser answers in its own time)."""

from __future__ import annotations

from typing import Final

from hypothesis import settings

REPEATABLE: Final = settings(deadline=None, database=None, derandomize=True)
