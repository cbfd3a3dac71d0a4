"""Liveness and readiness against the real database, broker and relay heartbeat."""

import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from metachat.api.app import create_app
from tests.integration.api.conftest import write_relay_heartbeat


class TestLive:
    async def test_is_200_while_the_process_runs(self, client) -> None:
        response = await client.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "live"}


class TestReady:
    async def test_is_503_naming_the_relay_when_it_never_beat(self, client, api_deps) -> None:
        async with api_deps.engine.begin() as conn:
            await conn.execute(text("DELETE FROM eventstore.heartbeats WHERE name = 'relay'"))
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"]["relay"] == {
            "ok": False,
            "detail": "no relay heartbeat recorded",
        }

    async def test_is_503_naming_the_relay_when_its_heartbeat_is_stale(
        self, client, api_deps
    ) -> None:
        stale = api_deps.settings.relay.heartbeat_stale_after + 60
        await write_relay_heartbeat(api_deps, age_seconds=stale)
        response = await client.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["relay"]["ok"] is False
        assert "old" in body["checks"]["relay"]["detail"]
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["broker"]["ok"] is True

    async def test_is_200_after_a_fresh_heartbeat(self, client, api_deps) -> None:
        limit = api_deps.settings.relay.heartbeat_stale_after
        await write_relay_heartbeat(api_deps, age_seconds=limit + 1)
        assert (await client.get("/health/ready")).status_code == 503
        await write_relay_heartbeat(api_deps, age_seconds=0)
        response = await client.get("/health/ready")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ready"
        assert all(check["ok"] for check in response.json()["checks"].values())

    async def test_is_503_naming_the_broker_when_it_does_not_answer(self, api_deps) -> None:
        await write_relay_heartbeat(api_deps, age_seconds=0)
        amqp = msgspec.structs.replace(
            api_deps.settings.amqp, url="amqp://guest:guest@127.0.0.1:1/"
        )
        settings = msgspec.structs.replace(api_deps.settings, amqp=amqp)
        async with AsyncTestClient(
            app=create_app(msgspec.structs.replace(api_deps, settings=settings))
        ) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["broker"]["ok"] is False
        assert checks["database"]["ok"] is True
        assert checks["relay"]["ok"] is True
