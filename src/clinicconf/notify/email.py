"""Sending email through the clinic's SMTP server with aiosmtplib."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Final

import aiosmtplib

from ..config import Settings
from .delivery import DeliveryError, EmailOut, Outcome

# Bounds every step (connect, each command, the message): a stuck server delays the
# outbox by this much per message at most.
SMTP_TIMEOUT_SECONDS: Final = 30.0


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send_email(self, message: EmailOut) -> Outcome:
        settings = self._settings
        try:
            await aiosmtplib.send(
                message.message,
                **connection_options(settings),
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPException as exc:
            raise smtp_failure(exc) from exc
        except OSError as exc:  # a TLS handshake failing during STARTTLS
            raise DeliveryError(
                f"SMTP server unreachable ({network_reason(exc)})", permanent=False
            ) from exc
        return "sent"


def connection_options(settings: Settings) -> dict[str, Any]:
    """How this server reaches the clinic's SMTP server: the sender and `check` alike."""
    return {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port,
        "use_tls": settings.smtp_security == "tls",
        # "none" means plain, even where the server offers STARTTLS.
        "start_tls": settings.smtp_security == "starttls",
        # Trusted in addition to the system's authorities.
        "cert_bundle": settings.smtp_ca_file or None,
    }


def smtp_failure(exc: aiosmtplib.SMTPException) -> DeliveryError:
    """What went wrong, in words fit for staff and the log. A server's own reply text
    is left out: it often quotes the address it refused.

    Only what is wrong with this message is permanent. A server that is down, or
    refuses our credentials, sender or TLS, fails every message alike: those are
    retried, so that nothing is lost while an administrator fixes the settings.
    """
    match exc:
        case aiosmtplib.SMTPRecipientsRefused(recipients=[first, *_]):
            return DeliveryError(
                f"the mail server refused the recipient (SMTP {first.code})",
                permanent=first.code >= 500,
            )
        case aiosmtplib.SMTPRecipientRefused(code=code):
            return DeliveryError(
                f"the mail server refused the recipient (SMTP {code})", permanent=code >= 500
            )
        case aiosmtplib.SMTPDataError(code=code):
            return DeliveryError(
                f"the mail server refused the message (SMTP {code})", permanent=code >= 500
            )
        case aiosmtplib.SMTPAuthenticationError(code=code):
            return DeliveryError(
                f"the mail server refused the SMTP username or password (SMTP {code})",
                permanent=False,
            )
        case aiosmtplib.SMTPSenderRefused(code=code):
            return DeliveryError(
                f"the mail server refused the sender address (SMTP {code})", permanent=False
            )
        case aiosmtplib.SMTPResponseException(code=code):
            return DeliveryError(f"the mail server answered SMTP {code}", permanent=False)
        case aiosmtplib.SMTPTimeoutError():
            return DeliveryError("the mail server did not answer in time", permanent=False)
        case aiosmtplib.SMTPConnectError():
            return DeliveryError(
                f"SMTP server unreachable ({network_reason(exc.__cause__)})", permanent=False
            )
        case aiosmtplib.SMTPServerDisconnected():
            return DeliveryError("the mail server closed the connection", permanent=False)
        case aiosmtplib.SMTPNotSupported():
            # aiosmtplib's own fixed text (e.g. a non-ASCII address without SMTPUTF8).
            return DeliveryError(exc.message, permanent=True)
        case _:
            # aiosmtplib's own fixed text (e.g. STARTTLS or AUTH not offered).
            return DeliveryError(exc.message, permanent=False)


def network_reason(error: BaseException | None) -> str:
    match error:
        case ssl.SSLCertVerificationError(verify_message=message):
            return f"certificate not trusted: {message}"
        case ssl.SSLError(reason=reason):
            return f"TLS failed: {reason}"
        case ConnectionRefusedError():
            return "connection refused"
        case socket.gaierror():
            return "unknown host name"
        case None:
            return "connection lost"
        case _:
            return type(error).__name__
