"""What the tests run on 127.0.0.1 besides the app: an SMTP server (aiosmtpd), an
HTTPS stand-in for Vonage's SMS API (their fixtures are in tests/conftest.py), and
another process holding the database; and waiting for what none of them announces."""

from __future__ import annotations

import asyncio
import base64
import email.policy
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
# Media between aiortc and the browsers stays on loopback (the network rule).
LOOPBACK_ICE = "127.0.0.1"
# Above the sender's idle poll (5 s), so that a loaded machine does not fail a test.
WAIT_SECONDS = 15.0

# The app under test as pytest-aiohttp serves it, and its `aiohttp_client` fixture.
Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]


def free_port() -> int:
    """A port nothing listens on (aiosmtpd's Controller cannot be given port 0)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float = WAIT_SECONDS
) -> None:
    """Polls until `condition` holds, for `within` seconds at most. What the tests
    watch (the database, a list filled on another thread, what a media peer has
    decoded) offers nothing to await."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def server_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    return context


# --- SMTP ---------------------------------------------------------------------------


class SmtpServer:
    """An aiosmtpd server collecting what it receives in `messages`. It can be
    stopped and started again on the same port, to play a mail server that is down.

    With a TLS context it speaks TLS (`security` "starttls" or "tls", as the setting
    smtp_security) and takes mail only from a login as clinic / mail-password.
    """

    USERNAME = "clinic"
    PASSWORD = "mail-password"

    def __init__(
        self,
        port: int,
        tls: ssl.SSLContext | None = None,
        security: Literal["starttls", "tls"] = "starttls",
    ) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        # Logins the server was offered, as (username, password).
        self.logins: list[tuple[str, str]] = []
        # An SMTP reply to refuse every recipient with; "{address}" stands for theirs.
        self.refuse_recipients: str | None = None
        self._options: dict[str, Any] = {}
        if tls is not None:
            self._options["authenticator"] = self._authenticate
            if security == "starttls":
                self._options.update(tls_context=tls, require_starttls=True)
            else:
                # aiosmtpd's login-needs-TLS check knows only STARTTLS; this is TLS throughout.
                self._options.update(ssl_context=tls, auth_require_tls=False)
        self._controller: Controller | None = None

    def start(self) -> None:
        # A new Controller each time: a stopped one has closed its event loop.
        self._controller = Controller(self, hostname=HOST, port=self.port, **self._options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, count: int) -> list[EmailMessage]:
        """The first `count` messages, once they have arrived."""

        async def arrived() -> bool:
            return len(self.messages) >= count

        await wait_until(arrived)
        return self.messages[:count]

    # aiosmtpd's handler hooks; they run on the controller's own thread and loop.

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_recipients is not None:
            return self.refuse_recipients.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == (self.USERNAME, self.PASSWORD))


@dataclass
class TlsSmtp:
    server: SmtpServer
    security: Literal["starttls", "tls"]
    ca_file: Path  # the CA that signed the server's certificate, for settings.smtp_ca_file


# --- Vonage ---------------------------------------------------------------------------


@dataclass
class SmsRequest:
    form: dict[str, str]
    # From the Basic authorization header, as the SDK sends them.
    api_key: str
    api_secret: str


@dataclass
class VonageStandIn:
    """Answers `POST /sms/json` as Vonage's SMS API does, over HTTPS with a
    certificate from a CA of its own."""

    api_key: str = "vonage-key"
    api_secret: str = "vonage-secret"
    # "0" accepts the message; another status refuses it, as Vonage does.
    reply_status: str = "0"
    # Vonage in trouble: an HTTP error instead of an answer, or an answer this late.
    http_error: int | None = None
    delay_seconds: float = 0.0
    requests: list[SmsRequest] = field(default_factory=list)
    port: int = 0

    @property
    def rest_host(self) -> str:
        return f"{HOST}:{self.port}"

    async def handle_sms(self, request: web.Request) -> web.Response:
        if self.http_error is not None:
            return self._answer(
                {"type": "server-error", "title": "Internal Error"}, self.http_error
            )
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        key, _, secret = base64.b64decode(encoded).decode().partition(":")
        if scheme != "Basic" or (key, secret) != (self.api_key, self.api_secret):
            return self._answer({"type": "unauthorized", "title": "Unauthorized"}, 401)
        form = {name: str(value) for name, value in (await request.post()).items()}
        self.requests.append(SmsRequest(form, key, secret))
        await asyncio.sleep(self.delay_seconds)  # taken in, and answered late
        if self.reply_status == "0":
            part = {
                "to": form["to"],
                "message-id": f"msg-{len(self.requests)}",
                "status": "0",
                "remaining-balance": "12.34",
                "message-price": "0.0333",
                "network": "310004",
            }
        else:
            # Quoting the number, to show that it does not travel on into our records.
            part = {"status": self.reply_status, "error-text": f"Rejected for {form['to']}"}
        return self._answer({"message-count": "1", "messages": [part]})

    @staticmethod
    def _answer(body: dict[str, Any], status: int = 200) -> web.Response:
        response = web.json_response(body, status=status)
        # The SDK's connection pool would keep the connection open past the test, and
        # the server could not finish closing it.
        response.force_close()
        return response


# --- A database held by another process -------------------------------------------


# Another process takes the database's write lock, says so, and keeps it a while.
HOLD_THE_DATABASE = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


async def hold_database(path: Path, seconds: float) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_THE_DATABASE, str(path), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"holding\n"
    return holder
