"""Row-level security: the API's role, a policy on every tenant table, and what it lets through.

Data is written through the API itself (users, sessions, idempotency keys, conversations,
messages) and the read models are projected, so every tenant table holds rows of two tenants.
Then the API's own engine (`deps.scoped`) reads every table and view with no tenant set, and with
one tenant set, and tries to write across tenants.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.bootstrap import Deps
from metachat.conversations.partitions import create_months
from metachat.conversations.projections import CONVERSATION_MESSAGES
from metachat.database.tenancy import APP_ROLE, POLICY
from metachat.eventstore.projection.schema import create_generation, drop_generation
from metachat.kernel.tenancy import current_tenant, tenant_scope
from metachat.tenants.projections import TENANT_DIRECTORY
from tests.integration.api.conftest import Tenant
from tests.integration.conversations.read_models_support import READ_MODELS, project

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test user's

# Every relation that holds tenant rows (tables, partitions, views), wherever it lives.
_TENANT_RELATIONS = text("""
SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind, c.relrowsecurity,
       c.relforcerowsecurity, c.reloptions,
       EXISTS (SELECT FROM pg_policy AS p
               WHERE p.polrelid = c.oid AND p.polname = :policy) AS has_policy
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
""")


async def _relations(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(_TENANT_RELATIONS, {"policy": POLICY})).all())


async def _seed(client: AsyncTestClient[Litestar], tenant: Tenant) -> None:
    """Rows of `tenant` in every write-side table, through the API."""
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post(
        "/v1/users",
        json={"email": email, "password": PASSWORD, "role": "admin"},
        headers=tenant.auth,
    )
    assert created.status_code == 201, created.text
    logged_in = await client.post(
        "/v1/auth/login",
        json={"tenant_id": str(tenant.tenant_id), "email": email, "password": PASSWORD},
    )
    assert logged_in.status_code == 200, logged_in.text
    opened = await client.post(
        "/v1/conversations",
        json={"channel": "api", "customer_id": "cust-1", "metadata": {}},
        headers={**tenant.auth, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert opened.status_code == 201, opened.text
    posted = await client.post(
        f"/v1/conversations/{opened.json()['id']}/messages",
        json={"text": "hello", "external_id": uuid.uuid4().hex},
        headers=tenant.auth,
    )
    assert posted.status_code == 201, posted.text


@pytest_asyncio.fixture(loop_scope="session")
async def two_tenants(
    api_deps: Deps, client: AsyncTestClient[Litestar], new_tenant: Callable[..., Any]
) -> AsyncIterator[tuple[Tenant, Tenant]]:
    first, second = await new_tenant("Initech"), await new_tenant("Umbrella")
    for tenant in (first, second):
        await _seed(client, tenant)
        async with api_deps.engine.begin() as conn:
            await conn.execute(
                text("""INSERT INTO analytics.daily_activity (tenant_id, day, event_type, count)
                        VALUES (:t, current_date, 'test.seeded', 1)"""),
                {"t": tenant.tenant_id},
            )
    await project(api_deps, [*READ_MODELS, TENANT_DIRECTORY])
    yield first, second


async def _visible(conn: AsyncConnection, relations: list[str]) -> dict[str, tuple[int, int]]:
    """Rows the connection sees per relation (all, and those of the scoped tenant).

    A relation the role may not read at all (a partition made after its parent was granted) is
    left out: no privilege is nothing seen too.
    """
    tenant = current_tenant()
    seen = {}
    for name in relations:
        try:
            seen[name] = (await _count(conn, name), await _count(conn, name, tenant))
        except ProgrammingError as exc:
            if not isinstance(exc.orig, pg_errors.InsufficientPrivilege):
                raise
            await conn.rollback()
    return seen


async def _count(conn: AsyncConnection, relation: str, tenant_id: uuid.UUID | None = None) -> int:
    where = "" if tenant_id is None else " WHERE tenant_id = :t"
    value = await conn.scalar(text(f"SELECT count(*) FROM {relation}{where}"), {"t": tenant_id})
    return int(value or 0)


class TestTheApiRole:
    async def test_connects_as_a_role_that_cannot_bypass_row_level_security(
        self, api_deps: Deps
    ) -> None:
        async with api_deps.scoped.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("""SELECT current_user AS name, r.rolbypassrls, r.rolsuper,
                                (SELECT count(*) FROM pg_class WHERE relowner = r.oid) AS owns
                            FROM pg_roles AS r WHERE r.rolname = current_user""")
                )
            ).one()
        assert (row.name, row.rolbypassrls, row.rolsuper, row.owns) == (APP_ROLE, False, False, 0)

    async def test_the_workers_engine_is_the_owner_not_the_api_role(self, api_deps: Deps) -> None:
        async with api_deps.engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_user")) != APP_ROLE


class TestEveryTenantTableIsProtected:
    @pytest.mark.usefixtures("two_tenants")
    async def test_every_table_and_partition_has_the_policy_and_every_view_reads_as_its_caller(
        self, api_deps: Deps
    ) -> None:
        async with api_deps.engine.connect() as conn:
            relations = await _relations(conn)
        tables = [r for r in relations if r.relkind in ("r", "p")]
        views = [r for r in relations if r.relkind == "v"]
        assert {"eventstore.events", "tenants.api_keys", "api.idempotency_keys"} <= {
            r.name for r in tables
        }
        assert any(".conversation_messages_y" in r.name for r in tables)  # partitions too
        unprotected = [r.name for r in tables if not (r.relrowsecurity and r.has_policy)]
        assert unprotected == []
        definer_views = [
            r.name for r in views if "security_invoker=true" not in (r.reloptions or [])
        ]
        assert views
        assert definer_views == []

    async def test_a_new_generation_and_a_new_month_are_protected_when_created(
        self, api_deps: Deps
    ) -> None:
        generation = 90
        schema = CONVERSATION_MESSAGES.schema(generation)
        async with api_deps.engine.begin() as conn:
            await conn.run_sync(create_generation, CONVERSATION_MESSAGES, generation)
            await conn.run_sync(
                lambda sync: create_months(sync, schema=schema, months=[date(2031, 5, 1)])
            )
            created = [r for r in await _relations(conn) if r.name.startswith(f"{schema}.")]
            await conn.run_sync(drop_generation, CONVERSATION_MESSAGES, generation)
        assert f"{schema}.conversation_messages_y2031m05" in {r.name for r in created}
        assert [r.name for r in created if not (r.relrowsecurity and r.has_policy)] == []


class TestNoTenantSet:
    @pytest.mark.usefixtures("two_tenants")
    async def test_every_tenant_relation_looks_empty(self, api_deps: Deps) -> None:
        async with api_deps.engine.connect() as owner:
            relations = [r.name for r in await _relations(owner)]
            seeded = {name: await _count(owner, name) for name in relations}
        # Not vacuous: the owner sees rows in the tables the API reads and writes.
        for name in (
            "eventstore.events",
            "tenants.users",
            "tenants.refresh_tokens",
            "api.idempotency_keys",
            "conversations.conversation_list",
            "conversations.conversation_messages",
            "tenants.tenant_directory",
            "analytics.daily_activity",
        ):
            assert seeded[name] > 0, name
        with tenant_scope(None):
            async with api_deps.scoped.engine.connect() as conn:
                seen = await _visible(conn, relations)
        assert seeded.keys() - seen.keys() <= {n for n in relations if "_y" in n}  # partitions
        assert {name: total for name, (total, _) in seen.items() if total} == {}

    async def test_an_insert_without_a_tenant_is_refused(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, _ = two_tenants
        with tenant_scope(None), pytest.raises(DBAPIError) as refused:
            async with api_deps.scoped.engine.begin() as conn:
                await _insert_idempotency_key(conn, first.tenant_id)
        assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


async def _insert_idempotency_key(conn: AsyncConnection, tenant_id: uuid.UUID) -> None:
    await conn.execute(
        text("""INSERT INTO api.idempotency_keys (tenant_id, key, method, path, request_hash)
                VALUES (:t, :k, 'POST', '/v1/x', '\\x00')"""),
        {"t": tenant_id, "k": uuid.uuid4().hex},
    )


class TestOneTenantSet:
    async def test_sees_exactly_its_own_rows_everywhere(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, _ = two_tenants
        async with api_deps.engine.connect() as owner:
            relations = [r.name for r in await _relations(owner)]
            own = {name: await _count(owner, name, first.tenant_id) for name in relations}
        with tenant_scope(first.tenant_id):
            async with api_deps.scoped.engine.connect() as conn:
                seen = await _visible(conn, relations)
        assert seen["eventstore.events"][0] > 0
        assert {name: total for name, (total, mine) in seen.items() if total != mine} == {}
        assert {name: total for name, (total, _) in seen.items() if total != own[name]} == {}

    async def test_cannot_write_a_row_of_another_tenant(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, second = two_tenants
        with tenant_scope(first.tenant_id), pytest.raises(DBAPIError) as refused:
            async with api_deps.scoped.engine.begin() as conn:
                await _insert_idempotency_key(conn, second.tenant_id)
        assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)

    async def test_cannot_change_or_delete_another_tenants_rows(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, second = two_tenants
        with tenant_scope(first.tenant_id):
            async with api_deps.scoped.engine.begin() as conn:
                changed = await conn.execute(
                    text("UPDATE tenants.users SET active = false WHERE tenant_id = :t"),
                    {"t": second.tenant_id},
                )
                deleted = await conn.execute(
                    text("DELETE FROM api.idempotency_keys WHERE tenant_id = :t"),
                    {"t": second.tenant_id},
                )
        assert (changed.rowcount, deleted.rowcount) == (0, 0)
        async with api_deps.engine.connect() as owner:
            assert await _count(owner, "api.idempotency_keys", second.tenant_id) > 0

    async def test_cannot_write_the_read_models(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, _ = two_tenants
        with tenant_scope(first.tenant_id), pytest.raises(ProgrammingError) as refused:
            async with api_deps.scoped.engine.begin() as conn:
                await conn.execute(text("DELETE FROM conversations.conversation_list"))
        assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)

    async def test_the_tenant_ends_with_the_transaction(
        self, api_deps: Deps, two_tenants: tuple[Tenant, Tenant]
    ) -> None:
        first, _ = two_tenants
        async with api_deps.scoped.engine.connect() as conn:
            with tenant_scope(first.tenant_id):
                assert await _count(conn, "eventstore.events") > 0
                await conn.commit()
            # The same pooled connection, a new transaction with no tenant: nothing again.
            assert await _count(conn, "eventstore.events") == 0
