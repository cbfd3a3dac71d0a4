"""`metachat users`: create and list the users of a tenant (actor: the operator).

Output is JSON on stdout, one object per line for lists, like `metachat tenants`.
"""

import sys
import uuid

import click

from metachat.bootstrap import Deps
from metachat.cli.common import echo_json as _echo
from metachat.cli.common import run_use_case as _run
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.commands import ROLES, Role
from metachat.tenants.users import handlers


@click.group("users")
def group() -> None:
    """Users of a tenant: people who log in with an email and a password."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@group.command("create")
@click.argument("tenant_id", type=click.UUID)
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="agent", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def create(tenant_id: uuid.UUID, email: str, role: Role, password_stdin: bool) -> None:
    """Create a user; the password is prompted for (or read from stdin) and stored hashed."""
    password = _read_password(password_stdin)

    async def go(deps: Deps) -> handlers.UserView:
        return await handlers.create_user(
            tenant_id,
            email=email,
            password=password,
            role=role,
            by_role=None,
            store=deps.store,
            actor=Actor.operator(),
            correlation_id=uuid7(),
        )

    _echo(_run(go))


@group.command("list")
@click.argument("tenant_id", type=click.UUID)
def list_(tenant_id: uuid.UUID) -> None:
    """List a tenant's users, deactivated ones included (never a password hash)."""

    async def go(deps: Deps) -> list[handlers.UserView]:
        return await handlers.list_users(deps.engine, tenant_id)

    for user in _run(go):
        _echo(user)
