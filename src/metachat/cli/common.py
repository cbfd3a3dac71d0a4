"""Helpers shared by CLI commands: settings loading with one clear error, async running."""

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from metachat.bootstrap import Deps, build
from metachat.database.migrate import SchemaOutOfDateError
from metachat.kernel.errors import DomainError
from metachat.kernel.logging import configure_logging
from metachat.settings import Settings, SettingsError, settings_from_process_env

T = TypeVar("T")


def load(*, cache_loggers: bool = False) -> Settings:
    """Load settings or exit with one message naming every problem; configure logging.

    `cache_loggers`: for a long-lived server (`kernel.logging.configure_logging`'s `cache`).
    """
    try:
        settings = settings_from_process_env()
    except SettingsError as exc:
        click.echo(f"metachat: {exc}", err=True)
        sys.exit(2)
    configure_logging(level=settings.log_level, json=settings.log_json, cache=cache_loggers)
    return settings


async def build_or_exit(settings: Settings) -> Deps:
    """Build dependencies, or exit with one clear message when the schema is out of date."""
    try:
        return await build(settings)
    except SchemaOutOfDateError as exc:
        click.echo(f"metachat: {exc}", err=True)
        sys.exit(2)


def with_deps(fn: Callable[[Deps], Awaitable[T]], *, settings: Settings | None = None) -> T:
    """Build dependencies, run `fn` with them, and close them."""

    async def go() -> T:
        deps = await build_or_exit(settings or load())
        try:
            return await fn(deps)
        finally:
            await deps.close()

    return asyncio.run(go())


_encoder = msgspec.json.Encoder()


def echo_json(value: Any) -> None:
    """Print one value as a line of JSON on stdout (logs go to stderr)."""
    click.echo(_encoder.encode(value).decode())


def run_use_case(fn: Callable[[Deps], Awaitable[T]]) -> T:
    """Run a use case; a domain refusal becomes a one-line error and exit code 1."""
    try:
        return with_deps(fn)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from exc
