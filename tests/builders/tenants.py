"""Intent-named builders for the tenants context."""

import uuid

from metachat.kernel.ids import uuid7
from metachat.tenants.commands import SCOPES, IssueApiKey
from metachat.tenants.events import ApiKeyIssued, TenantCreated


def a_tenant_created(tenant_id: uuid.UUID | None = None, name: str = "Acme") -> TenantCreated:
    return TenantCreated(tenant_id=tenant_id or uuid7(), name=name)


def a_key_issued(
    key_id: uuid.UUID | None = None, *, scopes: tuple[str, ...] = SCOPES
) -> ApiKeyIssued:
    return ApiKeyIssued(
        key_id=key_id or uuid7(),
        name="default",
        prefix="abcdefghijkl",
        last_four="wxyz",
        scopes=sorted(scopes),
    )


def issue_key(
    key_id: uuid.UUID | None = None,
    *,
    scopes: tuple[str, ...] = SCOPES,
    replaces: uuid.UUID | None = None,
    name: str = "ci",
) -> IssueApiKey:
    return IssueApiKey(
        key_id=key_id or uuid7(),
        name=name,
        prefix="mnopqrstuvwx",
        last_four="abcd",
        scopes=scopes,
        replaces=replaces,
    )
