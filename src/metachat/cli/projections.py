"""`metachat projections`."""

import click


@click.group("projections")
def group() -> None:
    """projections commands."""
