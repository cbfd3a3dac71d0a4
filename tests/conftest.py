"""Test settings and shared fixtures.

Integration tests run against a real PostgreSQL with pgvector (the embedded pgserver, or the
server at MC_TEST_PG_ADMIN_URL) and the real RabbitMQ at MC_TEST_AMQP_URL (default localhost).
Every test session migrates one template database and clones fresh databases from it, and
uses its own exchange and queue names, so sessions never see each other's data.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from metachat.bootstrap import Deps, build
from metachat.database import migrate
from metachat.database.engine import libpq_url
from metachat.settings import AmqpSettings, RelaySettings, Secret, Settings

hypothesis_settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis_settings.load_profile(os.environ.get("MC_HYPOTHESIS_PROFILE", "dev"))

REPO = Path(__file__).resolve().parents[1]
AMQP_URL = os.environ.get("MC_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672/")
SESSION = uuid.uuid4().hex[:8]


def _start_pgserver() -> str:
    import pgserver

    data = Path(os.environ.get("MC_TEST_PG_DIR", REPO / ".metachat" / "test-pg")).resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    return str(pgserver.get_server(str(data), cleanup_mode=None).get_uri())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return os.environ.get("MC_TEST_PG_ADMIN_URL") or _start_pgserver()


def _with_database(url: str, name: str) -> str:
    from metachat.database.engine import sqlalchemy_url

    return (
        sqlalchemy_url(url)
        .set(database=name)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    name = f"mct_{SESSION}_template"
    with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(_with_database(pg_admin_url, name))
    yield name
    _drop(pg_admin_url, name)


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def new_database(pg_admin_url: str, template_database: str) -> Iterator[Callable[[], str]]:
    """Return a factory of fresh, migrated databases (cloned from the template)."""
    created: list[str] = []

    def make() -> str:
        name = f"mct_{SESSION}_{len(created)}"
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        created.append(name)
        return _with_database(pg_admin_url, name)

    yield make
    for name in created:
        _drop(pg_admin_url, name)


@pytest.fixture(scope="session")
def database_url(new_database: Callable[[], str]) -> str:
    """The session's shared database (tests that count rows should use `new_database`)."""
    return new_database()


CREATED_SETTINGS: list[Settings] = []


def make_settings(database_url: str, *, tag: str | None = None) -> Settings:
    """Settings for a test: its own exchange and queue names, test secrets, fast polling."""
    tag = tag or f"{SESSION}-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        env="test",
        database_url=database_url,
        data_dir=REPO / ".metachat" / "test-data",
        log_json=False,
        secret_key=Secret("test-secret-key-" + "x" * 32),
        api_key_pepper=Secret("test-api-key-pepper-" + "y" * 32),
        amqp=AmqpSettings(url=AMQP_URL, exchange=f"mct.{tag}.events", queue_prefix=f"mct.{tag}."),
        relay=RelaySettings(poll_interval=0.2, lease_retry=0.3),
    )
    CREATED_SETTINGS.append(settings)
    return settings


async def _delete_broker_objects(all_settings: list[Settings]) -> None:
    """Delete the exchanges and consumer queues that the session's settings named."""
    import aio_pika

    from metachat.eventstore.consumer import (
        dead_letter_exchange_name,
        dead_letter_queue_name,
        queue_name,
    )
    from metachat.worker.consumers_role import CONSUMERS

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for settings in all_settings:
            queues = [
                f(settings, spec.name)
                for spec in CONSUMERS
                for f in (queue_name, dead_letter_queue_name)
            ]
            exchanges = [settings.amqp.exchange, dead_letter_exchange_name(settings)]
            for name in queues:
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()
            for name in exchanges:
                channel = await connection.channel()
                await channel.exchange_delete(name)
                await channel.close()


@pytest.fixture(scope="session", autouse=True)
def _clean_broker() -> Iterator[None]:
    """Leave nothing behind on the shared broker: delete what this session declared."""
    yield
    if CREATED_SETTINGS:
        import asyncio

        asyncio.run(_delete_broker_objects(CREATED_SETTINGS))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url, tag=SESSION)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def deps(settings: Settings) -> AsyncIterator[Deps]:
    built = await build(settings, pool_size=5)
    yield built
    await built.close()
