"""Sealing tenant secrets (providers' API keys) at rest with AES-256-GCM.

The data key is derived from `METACHAT_SECRET_KEY` with HKDF-SHA256 under a purpose label, so
it is never the secret key itself and other uses of that key cannot collide with it. Each value
gets a fresh 96-bit nonce, and the associated data binds the ciphertext to its tenant and
provider: a row copied to another tenant, or to another provider, does not open.
"""

import os
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PURPOSE = b"metachat provider keys v1"
_NONCE_BYTES = 12
KEY_VERSION = 1
"""Stored beside each sealed value, so that a rotation of the secret key can be rolled out."""


class SecretBox:
    """Seals and opens one tenant's secrets; never logs or shows them."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 32:  # noqa: PLR2004 - the settings check asks for this much too
            raise ValueError("the secret key must be at least 32 characters")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE)
        self._aead = AESGCM(derived.derive(secret_key.encode()))

    def __repr__(self) -> str:
        return "SecretBox(***)"

    @staticmethod
    def _aad(tenant_id: uuid.UUID, name: str) -> bytes:
        return tenant_id.bytes + name.encode()

    def seal(self, plaintext: str, *, tenant_id: uuid.UUID, name: str) -> bytes:
        """Return nonce + ciphertext (with its tag) for one value."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._aad(tenant_id, name))
        return nonce + sealed

    def open(self, blob: bytes, *, tenant_id: uuid.UUID, name: str) -> str:
        """Return the plaintext; raise `cryptography.exceptions.InvalidTag` if it was altered."""
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        return self._aead.decrypt(nonce, sealed, self._aad(tenant_id, name)).decode()
