"""`metachat mcp ...` as an operator runs it: a real process, JSON on stdout, the real store."""

import subprocess
from typing import Any

import pytest

from metachat.bootstrap import build
from metachat.eventstore.envelope import Recorded
from metachat.tenants import mcp
from metachat.tenants.events import McpServerRegistered, McpServerRemoved
from tests.conftest import make_settings
from tests.integration.cli.test_tenants_cli import lines, metachat


def _register(env: dict[str, str], name: str, *options: str, ok: bool = True) -> Any:
    return metachat(env, "mcp", "register", name, *options, ok=ok)


def _listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`mcp list`, by name: each name once."""
    listed = lines(metachat(env, "mcp", "list"))
    servers = {server["name"]: server for server in listed}
    assert len(servers) == len(listed)
    return servers


def _refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    """The one-line error of a refused command (no traceback, nothing on stdout)."""
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"Error: {code}: ")
    return message


async def _recorded(database_url: str) -> list[Recorded]:
    deps = await build(make_settings(database_url), pool_size=2)
    try:
        return await deps.store.read_stream(mcp.STREAM)
    finally:
        await deps.close()


class TestRegister:
    def test_prints_the_registration_with_every_arg_and_variable(self, cli_env) -> None:
        (printed,) = lines(
            _register(
                cli_env, "orders", "--command", "/usr/local/bin/orders-mcp",
                "--arg", "--stdio", "--arg", "--region=eu",
                "--env-from-tenant", "SHOP_TOKEN", "--env-from-tenant", "SHOP_URL",
            )
        )  # fmt: skip
        assert printed == {
            "name": "orders",
            "command": "/usr/local/bin/orders-mcp",
            "args": ["--stdio", "--region=eu"],
            "env_from_tenant": ["SHOP_TOKEN", "SHOP_URL"],
        }
        assert _listed(cli_env)["orders"] == printed

    def test_registering_a_name_again_replaces_it(self, cli_env) -> None:
        _register(cli_env, "billing", "--command", "/opt/billing/v1", "--env-from-tenant", "KEY")
        (replaced,) = lines(_register(cli_env, "billing", "--command", "/opt/billing/v2"))
        assert _listed(cli_env)["billing"] == replaced
        assert replaced == {
            "name": "billing",
            "command": "/opt/billing/v2",
            "args": [],
            "env_from_tenant": [],
        }

    @pytest.mark.parametrize(
        ("name", "options", "field"),
        [
            ("Bad_Name", ("--command", "/bin/true"), "name"),
            ("empty", ("--command", ""), "command"),
            ("blank", ("--command", "   "), "command"),
            ("lower-env", ("--command", "/bin/true", "--env-from-tenant", "token"), "env"),
        ],
    )
    def test_an_invalid_registration_is_refused_with_a_message(
        self, cli_env, name: str, options: tuple[str, ...], field: str
    ) -> None:
        message = _refused(_register(cli_env, name, *options, ok=False), "validation_error")
        assert field in message

    def test_a_variable_that_changes_how_programs_start_is_refused(self, cli_env) -> None:
        result = _register(
            cli_env,
            "preload",
            "--command",
            "/bin/true",
            "--env-from-tenant",
            "LD_PRELOAD",
            ok=False,
        )
        assert "LD_PRELOAD changes how programs start" in _refused(result, "validation_error")

    def test_a_missing_command_is_a_usage_error(self, cli_env) -> None:
        result = _register(cli_env, "nocommand", ok=False)
        assert result.returncode == 2
        assert "--command" in result.stderr

    async def test_records_events_of_the_platform_by_the_operator(
        self, cli_env, cli_database
    ) -> None:
        _register(cli_env, "audited", "--command", "/bin/true")
        metachat(cli_env, "mcp", "remove", "audited")
        mine = [
            r
            for r in await _recorded(cli_database)
            if isinstance(r.event, McpServerRegistered | McpServerRemoved)
            and r.event.name == "audited"
        ]
        assert [type(r.event) for r in mine] == [McpServerRegistered, McpServerRemoved]
        assert {(r.envelope.actor.kind, r.envelope.actor.id) for r in mine} == {("operator", "cli")}
        assert {r.envelope.tenant_id for r in mine} == {mcp.PLATFORM_TENANT}


class TestListAndRemove:
    def test_remove_takes_it_off_the_list(self, cli_env) -> None:
        _register(cli_env, "gone", "--command", "/bin/true")
        (removed,) = lines(metachat(cli_env, "mcp", "remove", "gone"))
        assert removed == {"removed": "gone"}
        assert "gone" not in _listed(cli_env)

    def test_removing_an_unknown_name_is_a_clear_error(self, cli_env) -> None:
        result = metachat(cli_env, "mcp", "remove", "never-registered", ok=False)
        message = _refused(result, "not_found")
        assert "never-registered" in message
