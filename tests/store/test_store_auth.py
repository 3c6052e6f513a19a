"""Passwords, API tokens and webhook tokens: the right one opens, anything else does not."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy.orm import Session

from store import auth
from tests.store.factories import add_strategy, add_user


def test_password_round_trip_and_wrong_password() -> None:
    stored = auth.hash_password("correct horse")
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct hors", stored)
    assert not auth.verify_password("", stored)


def test_password_hash_is_salted_and_names_its_parameters() -> None:
    first, second = auth.hash_password("same"), auth.hash_password("same")
    assert first != second
    assert first.startswith(f"scrypt${auth.SCRYPT_N}${auth.SCRYPT_R}${auth.SCRYPT_P}$")
    assert "same" not in first


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "!",
        "pbkdf2$1$2$3$c2FsdA==$aGFzaA==",
        "scrypt$16384$8$1$not base64!$aGFzaA==",
        "scrypt$3$8$1$c2FsdA==$aGFzaA==",  # n must be a power of two
        "scrypt$1099511627776$8$1$c2FsdA==$aGFzaA==",  # more memory than allowed
        "scrypt$16384$8$c2FsdA==$aGFzaA==",
    ],
)
def test_malformed_password_hash_verifies_nothing(stored: str) -> None:
    assert not auth.verify_password("anything", stored)


def test_tokens_are_random_url_safe_and_stored_as_sha256_hex() -> None:
    token = auth.new_token()
    assert len(token) >= 43 and token != auth.new_token()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert auth.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


def test_authenticate_needs_the_right_name_and_password(session: Session) -> None:
    user = add_user(session, "dana")
    user.password_hash = auth.hash_password("s3cret")
    session.commit()
    assert auth.authenticate(session, "dana", "s3cret") is user
    assert auth.authenticate(session, "dana", "S3cret") is None
    assert auth.authenticate(session, "nobody", "s3cret") is None
    assert auth.authenticate(session, "DANA", "s3cret") is None


def test_user_for_api_token_finds_the_holder_only(session: Session) -> None:
    dana, eve = add_user(session, "dana"), add_user(session, "eve")
    session.commit()
    assert auth.user_for_api_token(session, "token-dana") is dana
    assert auth.user_for_api_token(session, "token-eve") is eve
    assert auth.user_for_api_token(session, "token-mallory") is None
    assert auth.user_for_api_token(session, "") is None
    assert auth.user_for_api_token(session, auth.token_hash("token-dana")) is None


@pytest.mark.parametrize(
    ("token", "valid"),
    [
        ("hook-btc-trend", True),
        ("hook-btc-trend ", False),
        ("hook-eth", False),
        ("", False),
        ("é", False),
    ],
)
def test_check_webhook_token(session: Session, token: str, valid: bool) -> None:
    strategy = add_strategy(session, add_user(session, "dana"), "btc-trend")
    assert auth.check_webhook_token(strategy, token) is valid
