"""What the outbox sender hands to a transport, and how a delivery fails.

A composed message holds the recipient's address and their join link: it lives in
memory while it is sent, and only a `DeliveryError`'s text is ever stored or logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol

# Sent on its way, or only saved on the server because nothing is configured to send it.
Outcome = Literal["sent", "saved"]


@dataclass(frozen=True)
class EmailOut:
    outbox_id: int
    message: EmailMessage


@dataclass(frozen=True)
class SmsOut:
    outbox_id: int
    to: str  # E.164, "+15551234567"
    text: str


OutgoingMessage = EmailOut | SmsOut


class DeliveryError(Exception):
    """A message could not be delivered.

    Temporary failures (a server down, throttling) are retried; permanent ones (a
    refused recipient, a missing address) are not. The text is stored in
    outbox.last_error, shown to staff and logged, so it never names an address, a
    phone number, a person or a link.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class EmailTransport(Protocol):
    async def send_email(self, message: EmailOut) -> Outcome: ...


class SmsTransport(Protocol):
    async def send_sms(self, message: SmsOut) -> Outcome: ...


@dataclass(frozen=True)
class Transports:
    email: EmailTransport
    sms: SmsTransport

    async def send(self, message: OutgoingMessage) -> Outcome:
        """Deliver through the message's channel; raises DeliveryError."""
        if isinstance(message, EmailOut):
            return await self.email.send_email(message)
        return await self.sms.send_sms(message)
