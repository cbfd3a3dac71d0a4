"""Problem details for every kind of error, and the correlation id from request to events."""

import uuid

import msgspec
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from metachat.api.app import create_app
from metachat.database.engine import create_engine, sqlalchemy_url
from metachat.eventstore.postgres import PostgresEventStore
from metachat.tenants import model
from metachat.tenants.handlers import TenantDeps
from tests.integration.api.conftest import assert_problem


class TestRoutingErrors:
    async def test_unknown_route_is_a_404_problem(self, client) -> None:
        response = await client.get("/v1/nothing-here")
        body = assert_problem(response, 404, "not_found")
        assert body["instance"] == "/v1/nothing-here"

    async def test_unknown_method_is_a_405_problem_with_allow(self, client, tenant) -> None:
        response = await client.put("/v1/tenant", headers=tenant.auth)
        assert_problem(response, 405, "method_not_allowed")
        assert "GET" in response.headers["allow"]

    async def test_a_key_id_that_is_not_a_uuid_is_not_found(self, client, tenant) -> None:
        response = await client.delete("/v1/api-keys/not-a-uuid", headers=tenant.auth)
        assert_problem(response, 404, "not_found")


class TestUnexpectedErrors:
    async def test_answers_500_without_internals_and_logs_the_correlation_id(
        self, api_deps, tenant
    ) -> None:
        # The tenants use cases pointed at a database that does not exist: authentication fails
        # with a driver error that must not reach the caller.
        missing = sqlalchemy_url(api_deps.database_url).set(database="mct_no_such_database")
        engine = create_engine(missing.render_as_string(hide_password=False), pool_size=1)
        broken_tenants = TenantDeps(
            store=PostgresEventStore(engine, api_deps.registry), pepper="x" * 32
        )
        broken = msgspec.structs.replace(
            api_deps, scoped=msgspec.structs.replace(api_deps.scoped, tenants=broken_tenants)
        )
        correlation_id = str(uuid.uuid4())
        try:
            async with AsyncTestClient(app=create_app(broken)) as client:
                with capture_logs() as logs:
                    response = await client.get(
                        "/v1/tenant", headers={**tenant.auth, "X-Correlation-ID": correlation_id}
                    )
        finally:
            await engine.dispose()
        body = assert_problem(response, 500, "internal_error")
        assert body["correlation_id"] == correlation_id
        for leak in ("mct_no_such_database", "psycopg", "Traceback", "OperationalError"):
            assert leak not in response.text
        errors = [e for e in logs if e["event"] == "unhandled_error"]
        assert errors
        assert errors[0]["correlation_id"] == correlation_id
        assert errors[0]["log_level"] == "error"


class TestCorrelationId:
    async def test_header_id_is_echoed_and_recorded_on_the_events(
        self, client, api_deps, tenant
    ) -> None:
        correlation_id = uuid.uuid4()
        response = await client.post(
            "/v1/api-keys",
            headers={**tenant.auth, "X-Correlation-ID": str(correlation_id)},
            json={"name": "traced"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["x-correlation-id"] == str(correlation_id)
        recorded = await api_deps.store.read_stream(model.stream_id(tenant.tenant_id))
        traced = [r for r in recorded if r.envelope.correlation_id == correlation_id]
        assert [r.envelope.type for r in traced] == ["tenants.api_key_issued"]
        assert traced[0].envelope.actor.id == str(tenant.key_id)

    async def test_rotation_and_revocation_carry_the_id_too(self, client, api_deps, tenant) -> None:
        key = (await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "r"})).json()
        rotate_id, revoke_id = uuid.uuid4(), uuid.uuid4()
        rotated = await client.post(
            f"/v1/api-keys/{key['id']}/rotate",
            headers={**tenant.auth, "X-Correlation-ID": str(rotate_id)},
        )
        await client.delete(
            f"/v1/api-keys/{rotated.json()['id']}",
            headers={**tenant.auth, "X-Request-ID": str(revoke_id)},
        )
        recorded = await api_deps.store.read_stream(model.stream_id(tenant.tenant_id))
        by_id: dict[uuid.UUID, list[str]] = {}
        for r in recorded:
            by_id.setdefault(r.envelope.correlation_id, []).append(r.envelope.type)
        assert by_id[rotate_id] == ["tenants.api_key_issued", "tenants.api_key_revoked"]
        assert by_id[revoke_id] == ["tenants.api_key_revoked"]

    async def test_request_id_header_is_accepted(self, client) -> None:
        request_id = str(uuid.uuid4())
        response = await client.get("/health/live", headers={"X-Request-ID": request_id})
        assert response.headers["x-correlation-id"] == request_id

    async def test_an_invalid_id_is_replaced_by_a_fresh_uuid7(self, client) -> None:
        response = await client.get("/health/live", headers={"X-Correlation-ID": "<script>"})
        minted = uuid.UUID(response.headers["x-correlation-id"])
        assert minted.version == 7

    async def test_error_responses_carry_the_id(self, client) -> None:
        correlation_id = str(uuid.uuid4())
        response = await client.get("/v1/tenant", headers={"X-Correlation-ID": correlation_id})
        body = assert_problem(response, 401, "unauthenticated")
        assert body["correlation_id"] == correlation_id
