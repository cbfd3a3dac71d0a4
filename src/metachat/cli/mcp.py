"""`metachat mcp`: the platform's MCP servers, registered by an operator (never a tenant).

A registration is the command the platform runs, speaking MCP over stdio, and the environment
variables whose values each tenant gives when it enables the server. Output is JSON on stdout;
a refusal is one line on stderr, `Error: <code>: <detail>`, and exit code 1.
"""

import click
import msgspec

from metachat.bootstrap import Deps
from metachat.cli.common import echo_json as _echo
from metachat.cli.common import run_use_case as _run
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ValidationError
from metachat.kernel.ids import uuid7
from metachat.tenants import mcp
from metachat.tenants.commands import RegisterMcpServer


@click.group("mcp")
def group() -> None:
    """MCP servers the assistant may use: tenants enable them by name."""


@group.command("register")
@click.argument("name")
@click.option("--command", "command", required=True, help="The program to run (stdio MCP).")
@click.option("--arg", "args", multiple=True, help="An argument of the program (repeatable).")
@click.option(
    "--env-from-tenant",
    "env",
    multiple=True,
    help="An environment variable each tenant gives a value for (repeatable).",
)
def register(name: str, command: str, args: tuple[str, ...], env: tuple[str, ...]) -> None:
    """Register (or replace) an MCP server."""
    try:
        registration = msgspec.convert(
            {"name": name, "command": command, "args": args, "env_from_tenant": env},
            RegisterMcpServer,
        )
    except msgspec.ValidationError as exc:
        # The kernel's code, as the rules `mcp.register_server` checks give it (exit code 1).
        raise click.ClickException(f"{ValidationError.code}: {exc}") from exc

    async def go(deps: Deps) -> RegisterMcpServer:
        return await mcp.register_server(
            deps.store, registration, actor=Actor.operator(), correlation_id=uuid7()
        )

    _echo(_run(go))


@group.command("list")
def list_() -> None:
    """List the registered servers."""

    async def go(deps: Deps) -> dict[str, RegisterMcpServer]:
        return await mcp.registered_servers(deps.store)

    for server in _run(go).values():
        _echo(server)


@group.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Take a server off the platform (tenants that enabled it no longer get its tools)."""

    async def go(deps: Deps) -> None:
        await mcp.remove_server(deps.store, name, actor=Actor.operator(), correlation_id=uuid7())

    _run(go)
    _echo({"removed": name})
