"""Secrets: password hashes, API and webhook tokens, and the lookups that check them.

Passwords are hashed with scrypt (stdlib), salted, with the parameters kept in
the stored string (`scrypt$n$r$p$salt$hash`, base64) so they can be raised later
without breaking old hashes. Tokens are random (`secrets.token_urlsafe(32)`, 256
bits), so a plain sha256 is enough to store them; a token is found by its hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Strategy, User

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
# Enough for the parameters above with room to raise them; a tampered hash cannot ask for more.
SCRYPT_MAXMEM = 64 * 1024 * 1024
_SCHEME = "scrypt"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=length
    )


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, parameters included."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        raw_salt = base64.b64decode(salt, validate=True)
        actual = _scrypt(password, raw_salt, int(n), int(r), int(p), len(expected))
    except (ValueError, OverflowError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _unknown_user_hash() -> str:
    """Checked against when the user does not exist, so that both answers take as long."""
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    """A fresh API or webhook token (URL-safe, 256 random bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user whose name and password these are, else None."""
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        verify_password(password, _unknown_user_hash())
        return None
    # The hash is checked for a deactivated user too: both refusals take as long.
    matches = verify_password(password, user.password_hash)
    return user if matches and user.is_active else None


def user_for_api_token(session: Session, token: str) -> User | None:
    """The active user holding this API token, else None."""
    if not token:
        return None
    query = select(User).where(User.api_token_hash == token_hash(token), User.is_active)
    return session.scalars(query).one_or_none()


def check_webhook_token(strategy: Strategy, token: str) -> bool:
    """Whether `token` is the strategy's webhook token, compared in constant time."""
    return hmac.compare_digest(strategy.webhook_token_hash, token_hash(token))
