"""Entry point of the `metachat` console script."""

import click

from metachat.cli import db, dlq, mcp, projections, run, tenants, users


@click.group()
@click.version_option(package_name="metachat")
def cli() -> None:
    """MetaChat: multi-tenant conversational AI on an event-sourced backbone."""


cli.add_command(db.group)
cli.add_command(run.command)
cli.add_command(tenants.group)
cli.add_command(projections.group)
cli.add_command(dlq.group)
cli.add_command(users.group)
cli.add_command(mcp.group)


def main() -> None:
    """Run the CLI."""
    cli()
