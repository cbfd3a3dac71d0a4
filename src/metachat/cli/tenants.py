"""`metachat tenants`: create and list tenants, manage their API keys (actor: the operator).

Every command prints JSON on stdout (one object, or one object per line for lists), so its
output can be piped to `jq`; logs go to stderr.
"""

import uuid
from datetime import UTC, datetime

import click

from metachat.bootstrap import Deps
from metachat.cli.common import echo_json as _echo
from metachat.cli.common import run_use_case as _run
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants import handlers, queries, reads
from metachat.tenants.commands import SCOPES


@click.group("tenants")
def group() -> None:
    """Tenants and their API keys."""


@group.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create a tenant with a first API key holding every scope (the key is shown once)."""

    async def go(deps: Deps) -> handlers.IssuedKey:
        return await handlers.create_tenant(
            name, deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
        )

    issued = _run(go)
    _echo({"tenant_id": issued.tenant_id, "api_key": issued.api_key, "key_id": issued.key_id})


@group.command("list")
@click.option("--limit", type=click.IntRange(1, queries.MAX_PAGE), default=100, show_default=True)
@click.option("--after", type=click.UUID, help="Continue after this tenant id (keyset paging).")
def list_(limit: int, after: uuid.UUID | None) -> None:
    """List tenants from the tenant directory (kept current by the projector role)."""

    async def go(deps: Deps) -> list[queries.TenantDirectoryEntry]:
        async with deps.engine.connect() as conn:
            return await queries.list_tenants(conn, limit=limit, after=after)

    for entry in _run(go):
        _echo(entry)


@group.command("show")
@click.argument("tenant_id", type=click.UUID)
def show(tenant_id: uuid.UUID) -> None:
    """Show one tenant, read from its own event stream (always current)."""

    async def go(deps: Deps) -> reads.TenantView:
        return await reads.get_tenant(deps.store, tenant_id=tenant_id, now=datetime.now(UTC))

    _echo(_run(go))


@group.group("keys")
def keys() -> None:
    """API keys of one tenant."""


@keys.command("create")
@click.argument("tenant_id", type=click.UUID)
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(SCOPES), help="Repeat; default: all."
)
@click.option(
    "--expires-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help="With a timezone, e.g. 2030-01-01T00:00:00+00:00. Default: never.",
)
def keys_create(
    tenant_id: uuid.UUID, name: str, scopes: tuple[str, ...], expires_at: datetime | None
) -> None:
    """Issue an API key (the plaintext is printed once and never stored)."""

    async def go(deps: Deps) -> handlers.IssuedKey:
        return await handlers.issue_api_key(
            tenant_id,
            name=name,
            scopes=scopes or SCOPES,
            expires_at=expires_at,
            deps=deps.tenants,
            actor=Actor.operator(),
            correlation_id=uuid7(),
        )

    _echo(_run(go))


@keys.command("list")
@click.argument("tenant_id", type=click.UUID)
def keys_list(tenant_id: uuid.UUID) -> None:
    """List a tenant's keys, revoked ones included (never a secret or a hash)."""

    async def go(deps: Deps) -> list[reads.ApiKeyView]:
        return await reads.list_api_keys(deps.engine, tenant_id=tenant_id)

    for key in _run(go):
        _echo(key)


@keys.command("revoke")
@click.argument("tenant_id", type=click.UUID)
@click.argument("key_id", type=click.UUID)
def keys_revoke(tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke a key for good (revoking it again changes nothing)."""

    async def go(deps: Deps) -> None:
        await handlers.revoke_api_key(
            tenant_id, key_id, deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
        )

    _run(go)
    _echo({"tenant_id": tenant_id, "key_id": key_id, "revoked": True})


@keys.command("rotate")
@click.argument("tenant_id", type=click.UUID)
@click.argument("key_id", type=click.UUID)
def keys_rotate(tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Replace a key with a new one (same name and scopes); the old one stops working."""

    async def go(deps: Deps) -> handlers.IssuedKey:
        return await handlers.rotate_api_key(
            tenant_id, key_id, deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
        )

    _echo(_run(go))
