"""API key material: generation, keyed hashing and parsing.

A key is `mck_<prefix>_<secret>`: 12 lookup characters and 43 characters (256 bits) of secret.
The key has full entropy, so a keyed fast hash (HMAC-SHA256 with the server's pepper) is the
right tool; a slow password hash would only cost every request time (as GitHub tokens do). The
database compares the stored hash with the presented key's (`tenants.authenticate_api_key`).
"""

import hashlib
import hmac
import secrets
import string

import msgspec

_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LEN = 12


class KeyMaterial(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly generated key: the plaintext (shown once) and what is stored."""

    plaintext: str
    prefix: str
    last_four: str


def generate() -> KeyMaterial:
    """Generate a new API key."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    secret = secrets.token_urlsafe(32)
    plaintext = f"mck_{prefix}_{secret}"
    return KeyMaterial(plaintext=plaintext, prefix=prefix, last_four=plaintext[-4:])


def digest(plaintext: str, *, pepper: str) -> bytes:
    """Return the keyed hash stored for a key."""
    return hmac.new(pepper.encode(), plaintext.encode(), hashlib.sha256).digest()


def parse_prefix(plaintext: str) -> str | None:
    """Return the lookup prefix of a well-formed key, or None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != "mck" or len(parts[1]) != PREFIX_LEN or not parts[2]:  # noqa: PLR2004
        return None
    return parts[1]
