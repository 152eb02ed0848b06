"""Logs that never record a join or setup token: the access log, and a filter for the
handlers of every other log."""

from __future__ import annotations

import logging
import re
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# /j/<token>, /p/<token>, /setup/<token> (and their /ws sockets): the path itself is the
# secret. Anywhere in a text, as aiohttp's error for a malformed request line quotes it.
_TOKEN_PATH: Final = re.compile(r"/(j|p|setup)/[^/?#\s'\"]+")


def redact(text: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/[token]", text)


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # The query string is dropped too: it may carry a name or a search for a patient.
        self.logger.info(
            "%s %s %s %d %.0fms",
            request.remote,
            request.method,
            redact(request.path),
            response.status,
            time * 1000,
        )


class RedactTokens(logging.Filter):
    """Takes tokens out of a record's message, traceback and stack before a handler
    writes it. aiohttp logs a request line it cannot parse, URL included, with
    "Error handling request"; so may any exception's text."""

    _formatter: Final = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)  # a malformed call: its text, without the arguments
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_tokens_in_logs() -> None:
    """On every handler of the root logger, which every log reaches: call once logging
    is configured."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
