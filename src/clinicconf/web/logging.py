"""An access log that never records a join, setup or session token."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# /j/<token>, /p/<token>, /setup/<token>: the path itself is the secret.
_TOKEN_PATH: Final = re.compile(r"^/(j|p|setup)/[^/?]+")


def redact_path(path: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/[token]", path)


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # The query string is dropped too: it may carry a name or a search for a patient.
        self.logger.info(
            "%s %s %s %d %.0fms",
            request.remote,
            request.method,
            redact_path(request.path),
            response.status,
            time * 1000,
        )
