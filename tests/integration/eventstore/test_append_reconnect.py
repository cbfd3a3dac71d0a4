"""A connection the server terminated is not handed out again after a failed append."""

from sqlalchemy import text

from metachat.bootstrap import build
from metachat.eventstore.envelope import Metadata
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.events import TenantRenamed
from tests.conftest import make_settings


async def test_append_recovers_after_the_server_drops_pooled_connections(new_database) -> None:
    deps = await build(make_settings(new_database()), pool_size=4)
    try:
        await _scenario(deps)
    finally:
        await deps.close()


async def _scenario(deps) -> None:
    tenant = uuid7()
    async with deps.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant}
        )
    meta = Metadata(tenant_id=tenant, actor=Actor.system(), correlation_id=uuid7())
    await deps.store.append(
        "reconnect-1", [TenantRenamed(name="a")], expected_version=0, metadata=meta
    )
    async with deps.engine.connect() as admin:
        await admin.execute(
            text("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                                    """)
        )
    failures = 0
    for version in range(1, 20):
        try:
            await deps.store.append(
                "reconnect-1", [TenantRenamed(name="b")], expected_version=version, metadata=meta
            )
        except Exception:  # each dropped pooled connection may fail once, then is discarded
            failures += 1
            await deps.store.append(
                "reconnect-1", [TenantRenamed(name="b")], expected_version=version, metadata=meta
            )
    assert failures <= deps.engine.pool.size() + 1
    assert len(await deps.store.read_stream("reconnect-1")) == 20
