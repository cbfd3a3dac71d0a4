"""HTTP routes of the tenants context: the caller's tenant and its API keys.

Thin on purpose: parse, call a handler or a read, shape the answer. The API assembly provides
`principal` (the authenticated caller), `tenant_deps` and `correlation_id`, and enforces the
scope each handler declares in `opt`. Every lookup is scoped to the caller's tenant, so another
tenant's key id is simply not found.
"""

import uuid
from datetime import UTC, datetime

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from metachat.kernel.errors import ValidationError
from metachat.tenants import handlers, reads
from metachat.tenants.commands import SCOPES
from metachat.tenants.handlers import IssuedKey, Principal, TenantDeps
from metachat.tenants.schemas import ApiKeyOut, CreateApiKeyIn, IssuedApiKeyOut, TenantOut

READ = {"scope": "tenant:read"}
MANAGE_KEYS = {"scope": "keys:manage"}


def _issued(key: IssuedKey) -> IssuedApiKeyOut:
    return IssuedApiKeyOut(
        id=key.key_id,
        tenant_id=key.tenant_id,
        name=key.name,
        scopes=key.scopes,
        expires_at=key.expires_at,
        api_key=key.api_key,
    )


class TenantController(Controller):
    """The tenant that owns the calling API key."""

    path = "/tenant"
    tags = ["tenant"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", opt=READ, summary="The caller's tenant")
    async def get_tenant(
        self, principal: NamedDependency[Principal], tenant_deps: NamedDependency[TenantDeps]
    ) -> TenantOut:
        """Return the tenant, read from its own event stream (current right after creation)."""
        view = await reads.get_tenant(
            tenant_deps.store, tenant_id=principal.tenant_id, now=datetime.now(UTC)
        )
        return TenantOut(
            id=view.tenant_id,
            name=view.name,
            created_at=view.created_at,
            active_keys=view.active_keys,
        )


class ApiKeyController(Controller):
    """The tenant's API keys: list, create, rotate, revoke."""

    path = "/api-keys"
    tags = ["api-keys"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", opt=READ, summary="List API keys")
    async def list_keys(
        self, principal: NamedDependency[Principal], tenant_deps: NamedDependency[TenantDeps]
    ) -> list[ApiKeyOut]:
        """Return every key of the tenant, revoked ones included; never a secret or a hash."""
        keys = await reads.list_api_keys(tenant_deps.store.engine, tenant_id=principal.tenant_id)
        return [
            ApiKeyOut(
                id=k.key_id,
                name=k.name,
                prefix=k.prefix,
                last_four=k.last_four,
                scopes=k.scopes,
                created_at=k.created_at,
                expires_at=k.expires_at,
                revoked_at=k.revoked_at,
                last_used_at=k.last_used_at,
            )
            for k in keys
        ]

    @post("/", opt=MANAGE_KEYS, status_code=201, summary="Create an API key")
    async def create_key(
        self,
        data: JSONBody[CreateApiKeyIn],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> IssuedApiKeyOut:
        """Create a key; its plaintext is in this response and nowhere else, ever."""
        if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
            raise ValidationError("expires_at must be in the future", field="expires_at")
        key = await handlers.issue_api_key(
            principal.tenant_id,
            name=data.name,
            scopes=tuple(data.scopes) if data.scopes is not None else SCOPES,
            expires_at=data.expires_at,
            deps=tenant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _issued(key)

    @post("/{key_id:uuid}/rotate", opt=MANAGE_KEYS, status_code=201, summary="Rotate an API key")
    async def rotate_key(
        self,
        key_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> IssuedApiKeyOut:
        """Replace a key by a new one with the same name and scopes; the old one stops working."""
        key = await handlers.rotate_api_key(
            principal.tenant_id,
            key_id,
            deps=tenant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _issued(key)

    @delete("/{key_id:uuid}", opt=MANAGE_KEYS, status_code=204, summary="Revoke an API key")
    async def revoke_key(
        self,
        key_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Revoke a key for good; revoking it again is accepted and changes nothing."""
        await handlers.revoke_api_key(
            principal.tenant_id,
            key_id,
            deps=tenant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )


ROUTES = (TenantController, ApiKeyController)
