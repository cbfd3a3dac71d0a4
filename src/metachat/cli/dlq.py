"""`metachat dlq`."""

import click


@click.group("dlq")
def group() -> None:
    """dlq commands."""
