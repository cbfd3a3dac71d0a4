"""The embedded PostgreSQL 16 with pgvector (the `pgserver` package), used when no URL is given."""

from pathlib import Path

import psycopg
import structlog

log = structlog.get_logger()

DATABASE_NAME = "metachat"


def start_embedded(data_dir: Path, *, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server under `data_dir/pg` and return a URL to `database`.

    pgserver keeps the server running between processes and shares it between them; it listens
    on a Unix socket only, so the URL names the socket folder as its host.
    """
    import pgserver

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)  # type: ignore[attr-defined]
    admin_url: str = server.get_uri()
    ensure_database(admin_url, database)
    log.info("embedded_postgres_ready", data_dir=str(pgdata), database=database)
    uri: str = server.get_uri(database)
    return uri


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` on the server behind `admin_url` if it does not exist."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
