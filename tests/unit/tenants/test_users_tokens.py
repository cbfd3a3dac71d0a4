"""User tokens: signed per kind, expiring, never mistaken for each other or for an API key."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from metachat.kernel.errors import AuthenticationError
from metachat.tenants import keys
from metachat.tenants.users.tokens import Claims, TokenSigner, TokenType, is_user_token

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SIGNER = TokenSigner("s" * 32)


def claims(typ: TokenType, *, expires_in: timedelta = timedelta(minutes=5)) -> Claims:
    return Claims(
        typ=typ,
        tid=uuid.uuid4(),
        sub=uuid.uuid4(),
        exp=int((NOW + expires_in).timestamp()),
        jti=uuid.uuid4(),
        role="agent" if typ == "access" else None,
        fam=uuid.uuid4() if typ == "refresh" else None,
    )


@pytest.mark.parametrize("typ", ["access", "refresh"])
def test_round_trips(typ: TokenType) -> None:
    issued = claims(typ)
    assert SIGNER.verify(SIGNER.sign(issued), expected=typ, now=NOW) == issued


@pytest.mark.parametrize(("typ", "other"), [("access", "refresh"), ("refresh", "access")])
def test_one_kind_is_not_the_other(typ: TokenType, other: TokenType) -> None:
    with pytest.raises(AuthenticationError):
        SIGNER.verify(SIGNER.sign(claims(typ)), expected=other, now=NOW)


def test_expired_tokens_are_refused() -> None:
    token = SIGNER.sign(claims("access", expires_in=timedelta(seconds=-1)))
    with pytest.raises(AuthenticationError):
        SIGNER.verify(token, expected="access", now=NOW)


def test_another_secret_does_not_verify() -> None:
    token = TokenSigner("t" * 32).sign(claims("access"))
    with pytest.raises(AuthenticationError):
        SIGNER.verify(token, expected="access", now=NOW)


def test_a_tampered_body_is_refused() -> None:
    prefix, body, signature = SIGNER.sign(claims("access")).split(".")
    forged = SIGNER.sign(claims("access")).split(".")[1]
    with pytest.raises(AuthenticationError):
        SIGNER.verify(f"{prefix}.{forged}.{signature}", expected="access", now=NOW)
    assert body != forged


@pytest.mark.parametrize("junk", ["", "mcu.", "mcu..", "mcu.!!.??", "mcu.e30.AAAA", "x.y.z"])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(AuthenticationError):
        SIGNER.verify(junk, expected="access", now=NOW)


def test_an_api_key_is_not_a_user_token_and_the_reverse() -> None:
    api_key = keys.generate().plaintext
    token = SIGNER.sign(claims("access"))
    assert not is_user_token(api_key)
    assert is_user_token(token)
    assert keys.parse_prefix(token) is None
    with pytest.raises(AuthenticationError):
        SIGNER.verify(api_key, expected="access", now=NOW)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        TokenSigner("short")
