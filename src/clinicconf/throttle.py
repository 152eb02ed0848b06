"""Slowing down guessing of every credential: passwords, join links and API tokens.

Only failures count, so a right password, a link that exists or a valid token never
uses up anyone's allowance. Once a limit is reached, every attempt it covers is refused
alike, right or wrong, until the window has passed: answering a right one would tell
the guesser which it was.

An address is the client's (web/middleware.py, `client_address`): the connection's, or
behind a trusted reverse proxy (settings.trusted_proxies) the one it forwarded.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import Final, Literal

from . import audit
from .db import Database
from .errors import ClinicConfError

WINDOW_SECONDS: Final = 15 * 60
# Enough for a person who mistypes; far too few for guessing.
FAILURES_PER_ACCOUNT: Final = 5
# Several staff may share a clinic's address behind its router.
FAILURES_PER_ADDRESS: Final = 50
# Join links are clicked, not typed: a person meets an unknown one only when a link was
# cut short, and tries it a few times. Many patients may share one clinic's or
# building's address, so an attacker among them must take a long time to lock them out.
LINK_FAILURES_PER_ADDRESS: Final = 50
# API tokens are pasted into a program's configuration: a wrong one fails every call.
API_TOKEN_FAILURES_PER_ADDRESS: Final = 20
# Memory stays bounded however many names or addresses an attacker tries: the stalest
# are forgotten, and each keeps at most its limit of times.
MAX_TRACKED: Final = 10_000

Credential = Literal["password", "join_link", "api_token"]
LockedBy = Literal["account", "address"]


def in_minutes(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


class TooManyAttempts(ClinicConfError):
    """Refused before looking at the credential: too many recent failures from here."""

    def __init__(self, what: str, seconds_to_wait: float) -> None:
        super().__init__(f"{what} Try again in {in_minutes(seconds_to_wait)}.")
        self.retry_after_seconds = math.ceil(seconds_to_wait)


class RecentFailures:
    def __init__(self, limit: int, window_seconds: float = WINDOW_SECONDS) -> None:
        self._limit = limit
        self._window = window_seconds
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is not None:
            cutoff = time.monotonic() - self._window
            while times and times[0] <= cutoff:
                times.popleft()
        return times

    def seconds_to_wait(self, key: str) -> float:
        """0 when `key` may try again now."""
        times = self._recent(key)
        if times is None or len(times) < self._limit:
            return 0.0
        return times[0] + self._window - time.monotonic()

    def failed(self, key: str) -> bool:
        """Count a failure; True when it is the one that locks `key` out."""
        times = self._recent(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self._limit)
        was_locked = len(times) >= self._limit
        times.append(time.monotonic())
        self._failures.move_to_end(key)
        if len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
        return not was_locked and len(times) >= self._limit

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class GuessingThrottle:
    """The application's recent failures at each way in: a password (per account and
    per address), a join link and an API token (per address)."""

    def __init__(self) -> None:
        self._by_account = RecentFailures(FAILURES_PER_ACCOUNT)
        self._by_address = RecentFailures(FAILURES_PER_ADDRESS)
        self.join_links = RecentFailures(LINK_FAILURES_PER_ADDRESS)
        self.api_tokens = RecentFailures(API_TOKEN_FAILURES_PER_ADDRESS)

    def seconds_to_wait(self, email: str, address: str) -> float:
        """0 when this email may be tried from this address now."""
        return max(
            self._by_account.seconds_to_wait(email.strip().lower()),
            self._by_address.seconds_to_wait(address),
        )

    def failed(self, email: str, address: str) -> list[LockedBy]:
        """Count a wrong password; returns the lockouts it starts."""
        locked: list[LockedBy] = []
        if self._by_account.failed(email.strip().lower()):
            locked.append("account")
        if self._by_address.failed(address):
            locked.append("address")
        return locked

    def succeeded(self, email: str) -> None:
        self._by_account.forget(email.strip().lower())


async def record_lockout(
    db: Database,
    credential: Credential,
    by: LockedBy,
    address: str,
    staff_id: int | None = None,
) -> None:
    """The audit entry for a lockout: which way in, locked for which account (when it
    is one) or from which address. Never the password, email, token or link tried."""
    async with db.transaction() as tx:
        await audit.record(
            tx,
            audit.SYSTEM,
            "locked_out",
            subject=None if staff_id is None else ("staff", staff_id),
            credential=credential,
            by=by,
            address=address,
        )
