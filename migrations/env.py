"""Alembic environment: runs migrations on the URL handed over by `metachat db upgrade`."""

from alembic import context
from sqlalchemy import create_engine, pool

from metachat.database.engine import sqlalchemy_url

url = context.config.attributes.get("database_url") or context.config.get_main_option(
    "sqlalchemy.url"
)
if not url:
    raise SystemExit("no database URL: run migrations with `metachat db upgrade`")

engine = create_engine(
    sqlalchemy_url(url).set(drivername="postgresql+psycopg"), poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
