"""DDL for projection generations: schemas, tables, the stable views, install and uninstall.

These functions take a synchronous `Connection`, so that Alembic migrations call them directly
(`op.get_bind()`) and async code calls them through `AsyncConnection.run_sync`.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from metachat.database.tenancy import expose_schema
from metachat.eventstore.projection.definition import Projection


@contextmanager
def _translated(conn: Connection, translate: dict[str | None, str | None]) -> Iterator[Connection]:
    # Connection.execution_options changes the connection in place (SQLAlchemy 2.0), so the
    # caller's own map (none, for a migration) is put back afterwards.
    prior = conn.get_execution_options().get("schema_translate_map")
    conn.execution_options(schema_translate_map=translate)
    try:
        yield conn
    finally:
        conn.execution_options(schema_translate_map=prior)


def create_generation(conn: Connection, projection: Projection, generation: int) -> None:
    """Create the schema, the empty tables and the `setup` extras of one generation (new schema).

    The API may read the new tables, under row-level security (`database.tenancy`).
    """
    schema = projection.schema(generation)
    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    with _translated(conn, projection.translate(generation)) as translated:
        projection.metadata.create_all(translated, tables=projection.tables, checkfirst=False)
    if projection.setup is not None:
        projection.setup(conn, schema)
    expose_schema(conn, schema)


def drop_generation(conn: Connection, projection: Projection, generation: int) -> None:
    """Drop one generation's schema and everything in it."""
    conn.execute(text(f'DROP SCHEMA IF EXISTS "{projection.schema(generation)}" CASCADE'))


def generations(conn: Connection, projection: Projection) -> list[int]:
    """Every generation whose schema exists, oldest first."""
    pattern = re.compile(rf"^{re.escape(projection.schema_prefix)}(\d+)$")
    names = conn.scalars(
        text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :prefix)"),
        {"prefix": projection.schema_prefix},
    )
    return sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))


def point_views(conn: Connection, projection: Projection, generation: int) -> None:
    """Point every view of the projection at one generation's tables.

    `CREATE OR REPLACE VIEW` keeps the view's identity (grants, dependants) and is what a
    rebuild with an unchanged shape uses. Views read with their caller's rights
    (`security_invoker`), so the tables' row-level security binds the API through them; the
    option is given every time because a replace resets the options it does not name. When a
    new generation changed the columns, the replace is refused (42P16) and the view is dropped
    and created again; both happen inside the caller's transaction, so readers still never see
    it missing.
    """
    schema = projection.schema(generation)
    for table, view in projection.views.items():
        body = f'{view} WITH (security_invoker = true) AS SELECT * FROM "{schema}"."{table}"'
        try:
            with conn.begin_nested():
                conn.execute(text(f"CREATE OR REPLACE VIEW {body}"))
        except DBAPIError as exc:
            if not isinstance(exc.orig, pg_errors.InvalidTableDefinition):
                raise
            conn.execute(text(f"DROP VIEW {view}"))
            conn.execute(text(f"CREATE VIEW {body}"))


def install(conn: Connection, projection: Projection, *, generation: int = 1) -> None:
    """Create a projection from nothing: generation tables, views, checkpoint at position 0.

    Used by migrations. The model is then filled by the runner (or by a rebuild), starting
    from position 0; a projection that is already installed is refused by the checkpoint key.
    """
    create_generation(conn, projection, generation)
    point_views(conn, projection, generation)
    conn.execute(
        text("INSERT INTO eventstore.checkpoints (name, position, generation) VALUES (:n, 0, :g)"),
        {"n": projection.name, "g": generation},
    )


def uninstall(conn: Connection, projection: Projection) -> None:
    """Remove a projection: its views, every generation, and its checkpoint."""
    for view in projection.views.values():
        conn.execute(text(f"DROP VIEW IF EXISTS {view}"))
    for generation in generations(conn, projection):
        drop_generation(conn, projection, generation)
    conn.execute(text("DELETE FROM eventstore.checkpoints WHERE name = :n"), {"n": projection.name})
