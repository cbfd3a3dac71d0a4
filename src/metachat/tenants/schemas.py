"""HTTP request and response bodies of the tenants API (never the events themselves)."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from metachat.tenants.commands import SCOPES

KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["ci-deploy"])]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
ScopeList = Annotated[
    list[str],
    msgspec.Meta(min_length=1, description=f"Scopes the key carries; any of: {', '.join(SCOPES)}"),
]


class TenantOut(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's tenant."""

    id: uuid.UUID
    name: str
    created_at: datetime
    active_keys: int


class ApiKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: never its secret or hash."""

    id: uuid.UUID
    name: str
    prefix: str
    last_four: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class CreateApiKeyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Create an API key. Without `scopes` the key gets every scope."""

    name: KeyName
    scopes: ScopeList | None = None
    expires_at: AwareDatetime | None = None


class IssuedApiKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """A new key with its plaintext secret: shown in this response only, never again."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    scopes: list[str]
    expires_at: datetime | None
    api_key: str
