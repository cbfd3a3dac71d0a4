"""Run the Alembic migrations under `migrations/` against a database URL."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

_REPO_ROOT = Path(__file__).resolve().parents[3]


def alembic_config(database_url: str) -> Config:
    """Return an Alembic config pointing at this repository's migrations and `database_url`."""
    config = Config(str(_REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_REPO_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    """Print the schema's current revision."""
    command.current(alembic_config(database_url))


class SchemaOutOfDateError(RuntimeError):
    """The database's schema revision is not the one this code was written for."""


def head_revision() -> str:
    """The newest revision under `migrations/`."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def check_schema(engine: AsyncEngine) -> None:
    """Raise SchemaOutOfDateError, naming the fix, unless the database is at the head revision."""
    expected = head_revision()
    try:
        async with engine.connect() as conn:
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError:  # no alembic_version table: never migrated
        current = None
    if current != expected:
        raise SchemaOutOfDateError(
            f"the database schema is at revision {current or 'none'}, this code needs {expected}:"
            " run `metachat db upgrade`"
        )
