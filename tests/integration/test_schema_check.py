"""Every process refuses to start on a schema that is not at the newest revision."""

import uuid

import psycopg
import pytest

from metachat.bootstrap import build
from metachat.database import migrate
from metachat.database.engine import libpq_url
from metachat.database.migrate import SchemaOutOfDateError
from tests.conftest import _with_database, make_settings


async def test_an_unmigrated_database_is_refused_with_the_command_to_run(pg_admin_url: str) -> None:
    name = f"mct_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _with_database(pg_admin_url, name)
        with pytest.raises(SchemaOutOfDateError, match="metachat db upgrade"):
            await build(make_settings(url))
        migrate.upgrade(url, "0001")
        with pytest.raises(SchemaOutOfDateError, match="at revision 0001"):
            await build(make_settings(url))
        migrate.upgrade(url)
        deps = await build(make_settings(url))
        await deps.close()
    finally:
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
