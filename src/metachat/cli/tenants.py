"""`metachat tenants`."""

import click


@click.group("tenants")
def group() -> None:
    """tenants commands."""
