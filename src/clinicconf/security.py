"""Secrets: the server key, random tokens, their hashes, and password hashing."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SECRET_KEY_BYTES: Final = 32
# 32 random bytes: 256 bits, well over the 128 the links need.
TOKEN_BYTES: Final = 32

_password_hasher: Final = PasswordHasher()  # argon2id with the library's current parameters


def load_or_create_secret_key(path: Path) -> bytes:
    """The server's secret key, kept in the data directory outside the database:
    a copy of the database alone lets nobody join a conference."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(SECRET_KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(key)
    if len(key) != SECRET_KEY_BYTES:
        raise RuntimeError(f"{path}: expected a {SECRET_KEY_BYTES}-byte key")
    return key


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """How a high-entropy token is looked up; SHA-256 suffices where no one can guess it."""
    return hashlib.sha256(token.encode()).digest()


def keyed_digest(key: bytes, purpose: str, data: bytes) -> bytes:
    return hmac.new(key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(_password_hasher.hash, password)


@functools.cache
def _unknown_user_hash() -> str:
    return _password_hasher.hash(new_token())


async def verify_password(password_hash: str | None, password: str) -> bool:
    """False for a wrong password, and for an account without one (None), which
    still costs a verification so that timing does not tell which accounts exist."""

    def verify() -> bool:
        try:
            return _password_hasher.verify(password_hash or _unknown_user_hash(), password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)
