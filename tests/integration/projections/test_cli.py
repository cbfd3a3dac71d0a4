"""`metachat projections status|rebuild` as an operator runs them: a real process."""

import json
import os
import subprocess
import sys
from typing import Any

from metachat.bootstrap import Deps
from tests.conftest import AMQP_URL, REPO, SESSION
from tests.integration.projections.support import TenantWriter, head, oracle, read_model

HEADER = ["name", "position", "head", "lag", "lag_s", "heartbeat", "generation"]


def _env(database_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")}
    return {
        **base,
        "METACHAT_ENV": "test",
        "METACHAT_DATABASE_URL": database_url,
        "METACHAT_DATA_DIR": str(REPO / ".metachat" / "test-data"),
        "METACHAT_SECRET_KEY": "proj-cli-secret-key-" + "s" * 32,
        "METACHAT_API_KEY_PEPPER": "proj-cli-api-key-pepper-" + "p" * 32,
        "METACHAT_AMQP_URL": AMQP_URL,
        "METACHAT_AMQP__EXCHANGE": f"mct.{SESSION}.projcli.events",
        "METACHAT_LOG_JSON": "false",
        "METACHAT_LOG_LEVEL": "WARNING",
    }


def metachat(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metachat", "projections", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _status(env: dict[str, str]) -> dict[str, Any]:
    result = metachat(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    # Other projections are installed too; this test drives the tenant directory.
    statuses = [json.loads(line) for line in result.stdout.splitlines()]
    (status,) = [s for s in statuses if s["name"] == "tenant_directory"]
    return status


class TestProjectionsCli:
    async def test_status_then_rebuild_then_status(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=300)
        env = _env(deps.database_url)
        top = await head(deps.engine)

        status = _status(env)
        assert status["name"] == "tenant_directory"
        got = (status["position"], status["head"], status["lag_events"], status["generation"])
        assert got == (0, top, top, 1)
        assert status["heartbeat_at"] is None

        table = metachat(env, "status")
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        (row,) = [r for r in rows if r.startswith("tenant_directory ")]
        assert header.split() == HEADER
        assert row.split()[:4] == ["tenant_directory", "0", str(top), str(top)]

        rebuilt = metachat(env, "rebuild", "tenant_directory")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert rebuilt.stdout.startswith(
            f"rebuilt tenant_directory into generation 2: {top} events"
        )
        assert "events/s" in rebuilt.stdout
        assert "switch" in rebuilt.stdout
        assert "[done]" in rebuilt.stderr, "progress lines go to stderr"
        assert await read_model(deps.engine) == await oracle(deps.engine)

        status = _status(env)
        assert (status["position"], status["lag_events"], status["generation"]) == (top, 0, 2)

    async def test_rebuild_of_an_unknown_projection_names_the_known_ones(self, deps: Deps) -> None:
        result = metachat(_env(deps.database_url), "rebuild", "nope")
        assert result.returncode != 0
        assert "unknown projection 'nope' (known: " in result.stderr
        assert "tenant_directory" in result.stderr
