"""Run the Alembic migrations under `migrations/` against a database URL."""

from pathlib import Path

from alembic import command
from alembic.config import Config

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
