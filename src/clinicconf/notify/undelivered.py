"""Where messages go when no SMTP server or Vonage account is configured: each is
saved to a file only the server's user can read, and the log says where.

The log line never quotes the message: it holds the recipient's address and their
join link, which must not end up in a log.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from .delivery import EmailOut, Outcome, SmsOut

log = logging.getLogger(__name__)


class UndeliveredFolder:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    async def send_email(self, message: EmailOut) -> Outcome:
        path = self._folder / f"email-{message.outbox_id}.eml"
        await asyncio.to_thread(self._save, path, message.message.as_bytes())
        log.warning("email not sent (no SMTP server configured); saved to %s", path)
        return "saved"

    async def send_sms(self, message: SmsOut) -> Outcome:
        path = self._folder / f"sms-{message.outbox_id}.txt"
        await asyncio.to_thread(self._save, path, f"To: {message.to}\n\n{message.text}\n".encode())
        log.warning("text message not sent (no Vonage account configured); saved to %s", path)
        return "saved"

    def _save(self, path: Path, content: bytes) -> None:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A retry after a crash overwrites its earlier copy.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
