"""`metachat db`: schema migrations."""

import click

from metachat.bootstrap import resolve_database_url
from metachat.cli.common import load
from metachat.database import migrate


@click.group("db")
def group() -> None:
    """Database schema."""


@group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Build or upgrade the schema (embedded PostgreSQL when METACHAT_DATABASE_URL is unset)."""
    url = resolve_database_url(load())
    migrate.upgrade(url, revision)
    click.echo(f"database at revision {revision}")


@group.command("url")
def url() -> None:
    """Print the database URL in use (starting the embedded server if needed)."""
    click.echo(resolve_database_url(load()))
