"""Password hashing with argon2id, run in a worker thread so it never blocks the event loop."""

import functools

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from metachat.kernel.errors import ValidationError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """A hash verified when the email is unknown, so that answer takes as long as a wrong one."""
    return _hasher.hash("metachat-no-such-user-password")


def check_policy(password: str) -> None:
    """Refuse a password too short to resist guessing or long enough to be a denial of service."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValidationError(
            f"password must be {MIN_LENGTH} to {MAX_LENGTH} characters", field="password"
        )


async def hash_password(password: str) -> str:
    """Return the argon2id hash of a password that passed the policy."""
    check_policy(password)
    return await anyio.to_thread.run_sync(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when the password matches; with no stored hash, spend the same time and say no."""
    if stored is None:
        await anyio.to_thread.run_sync(_verify, _dummy(), password)
        return False
    return await anyio.to_thread.run_sync(_verify, stored, password)
