"""Slowing down password guessing: recent sign-in failures per account and per address."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import Final

WINDOW_SECONDS: Final = 15 * 60
# Enough for a person who mistypes; far too few for guessing.
FAILURES_PER_ACCOUNT: Final = 5
# Several staff may share a clinic's address behind its router.
FAILURES_PER_ADDRESS: Final = 50
# Memory stays bounded however many names an attacker tries: the stalest are forgotten.
MAX_TRACKED: Final = 10_000


class RecentFailures:
    def __init__(self, limit: int, window_seconds: float = WINDOW_SECONDS) -> None:
        self._limit = limit
        self._window = window_seconds
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def seconds_to_wait(self, key: str) -> float:
        """0 when `key` may try again now."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        now = time.monotonic()
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) < self._limit:
            return 0.0
        return times[0] + self._window - now

    def failed(self, key: str) -> None:
        times = self._failures.setdefault(key, deque(maxlen=self._limit))
        times.append(time.monotonic())
        self._failures.move_to_end(key)
        if len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class SignInThrottle:
    def __init__(self) -> None:
        self._by_account = RecentFailures(FAILURES_PER_ACCOUNT)
        self._by_address = RecentFailures(FAILURES_PER_ADDRESS)

    def minutes_to_wait(self, email: str, address: str) -> int:
        """0 when this email may be tried from this address now."""
        seconds = max(
            self._by_account.seconds_to_wait(email.strip().lower()),
            self._by_address.seconds_to_wait(address),
        )
        return math.ceil(seconds / 60)

    def failed(self, email: str, address: str) -> None:
        self._by_account.failed(email.strip().lower())
        self._by_address.failed(address)

    def succeeded(self, email: str) -> None:
        self._by_account.forget(email.strip().lower())
