"""`metachat users ...` as an operator runs it: a real process, JSON on stdout."""

import subprocess
import sys
from typing import Any

from tests.integration.cli import conftest as cli_fixtures
from tests.integration.cli.test_tenants_cli import lines, metachat

# The CLI fixtures, registered here by name (they live in another folder's conftest).
cli_database = cli_fixtures.cli_database
cli_env = cli_fixtures.cli_env
PASSWORD = "a long operator-chosen password"  # noqa: S105 - the test user's password


def _create_user(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metachat", "users", "create", *args, "--password-stdin"],
        env=env,
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_creates_and_lists_users(cli_env: dict[str, str]) -> None:
    tenant: dict[str, Any] = lines(metachat(cli_env, "tenants", "create", "Acme"))[0]
    tenant_id = tenant["tenant_id"]
    created = _create_user(cli_env, tenant_id, "Ada@Example.com", "--role", "owner")
    assert created.returncode == 0, created.stderr
    user = lines(created)[0]
    assert user["email"] == "Ada@Example.com"
    assert user["role"] == "owner"
    assert PASSWORD not in created.stdout
    listed = lines(metachat(cli_env, "users", "list", tenant_id))
    assert [u["user_id"] for u in listed] == [user["user_id"]]
    assert "password" not in str(listed)


def test_refuses_a_duplicate_email_with_one_line(cli_env: dict[str, str]) -> None:
    tenant_id = lines(metachat(cli_env, "tenants", "create", "Globex"))[0]["tenant_id"]
    assert _create_user(cli_env, tenant_id, "bob@example.com").returncode == 0
    again = _create_user(cli_env, tenant_id, "BOB@example.com")
    assert again.returncode == 1
    assert "conflict" in again.stderr
    assert "Traceback" not in again.stderr
