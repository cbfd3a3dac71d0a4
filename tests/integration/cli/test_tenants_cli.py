"""`metachat tenants ...` as an operator runs it: a real process, JSON on stdout."""

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from metachat.api.app import create_app
from metachat.bootstrap import build
from metachat.settings import Secret
from metachat.tenants import model, queries
from metachat.worker.projector_role import run_projector
from tests.conftest import make_settings
from tests.integration.cli.conftest import PEPPER


def metachat(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "metachat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def created(cli_env: dict[str, str]) -> dict[str, Any]:
    (body,) = lines(metachat(cli_env, "tenants", "create", "Cli Corp"))
    return body


async def _client_get(database_url: str, api_key: str, path: str) -> tuple[int, Any]:
    settings = msgspec.structs.replace(make_settings(database_url), api_key_pepper=Secret(PEPPER))
    deps = await build(settings, pool_size=2)
    try:
        async with AsyncTestClient(app=create_app(deps)) as client:
            response = await client.get(path, headers={"Authorization": f"Bearer {api_key}"})
            return response.status_code, response.json()
    finally:
        await deps.close()


class TestTenantsCreate:
    async def test_prints_the_tenant_and_a_key_that_authenticates(
        self, created, cli_database
    ) -> None:
        assert set(created) == {"tenant_id", "api_key", "key_id"}
        uuid.UUID(created["tenant_id"])
        uuid.UUID(created["key_id"])
        status, body = await _client_get(cli_database, created["api_key"], "/v1/tenant")
        assert status == 200, body
        assert body == {**body, "id": created["tenant_id"], "name": "Cli Corp", "active_keys": 1}

    async def test_records_the_operator_as_actor(self, created, cli_database) -> None:
        deps = await build(make_settings(cli_database), pool_size=2)
        try:
            recorded = await deps.store.read_stream(
                model.stream_id(uuid.UUID(created["tenant_id"]))
            )
        finally:
            await deps.close()
        assert {r.envelope.actor.kind for r in recorded} == {"operator"}

    def test_refuses_an_empty_name_with_a_message(self, cli_env) -> None:
        result = metachat(cli_env, "tenants", "create", "   ", ok=False)
        assert result.returncode == 1
        assert "validation_error" in result.stderr
        assert result.stdout == ""


class TestTenantsList:
    async def test_lists_tenants_from_the_directory(self, created, cli_env, cli_database) -> None:
        deps = await build(make_settings(cli_database), pool_size=2)
        stop = asyncio.Event()
        projector = asyncio.create_task(run_projector(deps, stop))
        try:
            async with asyncio.timeout(60):
                while True:
                    async with deps.engine.connect() as conn:
                        shown = await queries.list_tenants(conn, limit=500)
                    if any(str(t.tenant_id) == created["tenant_id"] for t in shown):
                        break
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await projector
            await deps.close()
        listed = lines(await asyncio.to_thread(metachat, cli_env, "tenants", "list"))
        mine = [t for t in listed if t["tenant_id"] == created["tenant_id"]]
        assert mine
        assert mine[0]["name"] == "Cli Corp"

    def test_show_reads_the_stream(self, created, cli_env) -> None:
        (shown,) = lines(metachat(cli_env, "tenants", "show", created["tenant_id"]))
        assert shown["tenant_id"] == created["tenant_id"]
        assert shown["active_keys"] >= 1


class TestTenantsKeys:
    async def test_create_list_rotate_revoke(self, created, cli_env, cli_database) -> None:
        tenant_id = created["tenant_id"]
        run = asyncio.to_thread
        (issued,) = lines(
            await run(
                metachat,
                cli_env,
                "tenants",
                "keys",
                "create",
                tenant_id,
                "--name",
                "ops",
                "--scope",
                "tenant:read",
                "--expires-at",
                "2999-01-01T00:00:00+00:00",
            )
        )
        assert issued["scopes"] == ["tenant:read"]
        assert (await _client_get(cli_database, issued["api_key"], "/v1/tenant"))[0] == 200

        listed = lines(await run(metachat, cli_env, "tenants", "keys", "list", tenant_id))
        assert {k["key_id"] for k in listed} >= {created["key_id"], issued["key_id"]}
        assert all(
            "hash" not in json.dumps(k) and issued["api_key"] not in json.dumps(k) for k in listed
        )

        (rotated,) = lines(
            await run(metachat, cli_env, "tenants", "keys", "rotate", tenant_id, issued["key_id"])
        )
        assert (await _client_get(cli_database, issued["api_key"], "/v1/tenant"))[0] == 401
        assert (await _client_get(cli_database, rotated["api_key"], "/v1/tenant"))[0] == 200

        (revoked,) = lines(
            await run(metachat, cli_env, "tenants", "keys", "revoke", tenant_id, rotated["key_id"])
        )
        assert revoked["revoked"] is True
        assert (await _client_get(cli_database, rotated["api_key"], "/v1/tenant"))[0] == 401

    def test_an_unknown_tenant_is_reported(self, cli_env) -> None:
        result = metachat(
            cli_env, "tenants", "keys", "create", str(uuid.uuid4()), "--name", "x", ok=False
        )
        assert result.returncode == 1
        assert "not_found" in result.stderr
