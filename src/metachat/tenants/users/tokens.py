"""Signed user tokens: short-lived access tokens and rotating refresh tokens.

A token is `mcu.<base64url JSON claims>.<base64url HMAC-SHA256>`. Each kind is signed with its
own sub-key derived from the server's secret key, and carries its kind in the `typ` claim, so an
access token is never accepted as a refresh token nor the reverse, and neither parses as an API
key (`mck_...`). A small own format instead of JWT: no algorithm header to negotiate, nothing to
misconfigure, and one claim set we control.
"""

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from metachat.kernel.errors import AuthenticationError
from metachat.tenants.commands import Role

TokenType = Literal["access", "refresh"]
ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=30)
_PREFIX = "mcu"


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    """What a token says: whose it is, of which kind, until when."""

    typ: TokenType
    tid: uuid.UUID
    sub: uuid.UUID
    exp: int
    jti: uuid.UUID
    role: Role | None = None
    fam: uuid.UUID | None = None

    @property
    def expires_at(self) -> datetime:
        """The expiry as an aware datetime."""
        return datetime.fromtimestamp(self.exp, UTC)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Claims)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies user tokens with sub-keys of the server's secret key."""

    def __init__(self, secret_key: str) -> None:
        """Derive one sub-key per token kind (HMAC of a fixed label under the secret key)."""
        if len(secret_key) < 16:  # noqa: PLR2004 - a minimum, not a tunable
            raise ValueError("the secret key is too short to sign tokens")
        self._keys: dict[str, bytes] = {
            kind: hmac.new(
                secret_key.encode(), f"metachat.user-token.{kind}".encode(), "sha256"
            ).digest()
            for kind in ("access", "refresh")
        }

    def sign(self, claims: Claims) -> str:
        """Return the token for these claims."""
        body = _b64(_encoder.encode(claims))
        signature = hmac.new(self._keys[claims.typ], body.encode(), hashlib.sha256).digest()
        return f"{_PREFIX}.{body}.{_b64(signature)}"

    def verify(self, token: str, *, expected: TokenType, now: datetime) -> Claims:
        """Return the claims of a valid, unexpired token of the expected kind, or raise (401)."""
        prefix, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        if prefix != _PREFIX or not body or not signature:
            raise AuthenticationError("invalid token")
        wanted = hmac.new(self._keys[expected], body.encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(wanted, _unb64(signature))
            claims = _decoder.decode(_unb64(body)) if valid else None
        except (binascii.Error, ValueError, msgspec.DecodeError):
            claims = None
        if claims is None or claims.typ != expected or claims.expires_at <= now:
            raise AuthenticationError("invalid or expired token")
        return claims


def digest(token: str) -> bytes:
    """What is stored for a refresh token: its SHA-256 (the token has full entropy)."""
    return hashlib.sha256(token.encode()).digest()


def is_user_token(token: str) -> bool:
    """True when a bearer credential has the shape of a user token (not an API key)."""
    return token.startswith(f"{_PREFIX}.")
