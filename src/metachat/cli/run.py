"""`metachat run`: every role in one process, or one role (filled in by the run/API work)."""

import click


@click.command("run")
def command() -> None:
    """Run the platform."""
    raise click.ClickException("not built yet")
