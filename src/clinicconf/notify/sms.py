"""Sending text messages through Vonage's SMS API with its SDK.

The SDK blocks (it uses requests), so each send runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Final

import requests
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_sms import SmsError, SmsMessage

from ..config import Settings
from .delivery import DeliveryError, Outcome, SmsOut

VONAGE_TIMEOUT_SECONDS: Final = 30

# Vonage's documented SMS status codes (developer.vonage.com, SMS API troubleshooting).
# Their own error-text is not shown: we cannot be sure it never quotes the number.
VONAGE_STATUSES: Final = {
    1: "Throttled",
    2: "Missing params",
    3: "Invalid params",
    4: "Invalid credentials",
    5: "Internal error",
    6: "Invalid message",
    7: "Number barred",
    8: "Partner account barred",
    9: "Partner quota violation",
    10: "Too many existing binds",
    11: "Account not enabled for HTTP",
    12: "Message too long",
    14: "Invalid signature",
    15: "Invalid sender address",
    22: "Invalid network code",
    23: "Invalid callback URL",
    29: "Non-whitelisted destination",
    32: "Signature and API secret disallowed",
    33: "Number de-activated",
}
# What is wrong with this message or number: trying again cannot help. The other
# statuses (throttling, Vonage's own trouble, the account's credentials, credit or
# settings) are retried, so that nothing is lost while an administrator sorts them out.
PERMANENT_STATUSES: Final = frozenset({2, 3, 6, 7, 12, 22, 29, 33})


class VonageTransport:
    def __init__(self, settings: Settings) -> None:
        options: dict[str, Any] = {"timeout": VONAGE_TIMEOUT_SECONDS}
        if settings.vonage_rest_host:
            options["rest_host"] = settings.vonage_rest_host
        self._client = Vonage(
            Auth(api_key=settings.vonage_api_key, api_secret=settings.vonage_api_secret),
            HttpClientOptions(**options),
        )
        self._sender_id = settings.vonage_sender_id
        self._sending = threading.Lock()
        # The SDK logs each request's parameters (the number, the text with its join
        # link) at debug level: keep that out of the server's log at any log level.
        logging.getLogger("vonage").setLevel(logging.WARNING)

    async def send_sms(self, message: SmsOut) -> Outcome:
        sms = SmsMessage(
            # Vonage takes E.164 digits without the leading "+".
            to=message.to.removeprefix("+"),
            from_=self._sender_id,
            text=message.text,
            # Beyond ASCII (an accented name, say) needs UCS-2, or it arrives garbled.
            type="text" if message.text.isascii() else "unicode",
        )
        await asyncio.to_thread(self._send_blocking, sms)
        return "sent"

    def _send_blocking(self, sms: SmsMessage) -> None:
        # One at a time: the SDK's client keeps only the last answer, read on a refusal.
        with self._sending:
            try:
                self._client.sms.send(sms)
            except SmsError as exc:
                # The SDK folds the status into its message; the answer has it as data.
                raise refused(self._client.http_client.last_response.json()) from exc
            except HttpRequestError as exc:
                # A refused message comes as a status in a 200 answer; an HTTP error is
                # about the account, the settings or Vonage itself.
                raise DeliveryError(
                    f"Vonage answered HTTP {exc.response.status_code}", permanent=False
                ) from exc
            except requests.Timeout as exc:
                raise DeliveryError("Vonage did not answer in time", permanent=False) from exc
            except requests.exceptions.SSLError as exc:
                raise DeliveryError("Vonage unreachable (TLS failed)", permanent=False) from exc
            except requests.RequestException as exc:
                raise DeliveryError(
                    f"Vonage unreachable ({type(exc).__name__})", permanent=False
                ) from exc


def refused(answer: dict[str, Any]) -> DeliveryError:
    """The first failed part of a (possibly multi-part) message, as a DeliveryError."""
    statuses = [int(part["status"]) for part in answer["messages"]]
    status = next(s for s in statuses if s != 0)
    return DeliveryError(
        f"Vonage refused the message: status {status}"
        f" ({VONAGE_STATUSES.get(status, 'unknown status')})",
        permanent=status in PERMANENT_STATUSES,
    )
