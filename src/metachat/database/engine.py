"""Engine creation from any connection string libpq accepts.

URLs (`postgresql://`, `postgres://`), socket URLs
(`postgresql://user@/db?host=/run/postgresql`) and keyword/value strings
(`host=/run/postgresql dbname=metachat user=app`).
"""

from typing import Any

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from metachat.database.tenancy import APP_ROLE, role_option, scope_transactions

URL_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def sqlalchemy_url(url: str) -> URL:
    """Turn any libpq connection string into a psycopg SQLAlchemy URL."""
    if url.startswith(URL_PREFIXES):
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
        return parsed.set(drivername="postgresql+psycopg")
    params = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    user, password = params.pop("user", None), params.pop("password", None)
    database = params.pop("dbname", None)
    # Everything else (host: a name, an address, a socket folder or a list; port; sslmode; …)
    # stays in the query string, which libpq and psycopg read as connection keywords.
    return URL.create(
        "postgresql+psycopg", username=user, password=password, database=database, query=params
    )


def libpq_url(url: str) -> str:
    """Return the plain libpq form of a URL (for psycopg connections made without SQLAlchemy)."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# A transaction left idle holds its reserved event positions and with them every reader's mark
# (R2); the server ends such a session after this long, so an abandoned writer cannot stall the
# projections and the relay forever. Real transactions here last milliseconds.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def use_fast_json() -> None:
    """Decode json/jsonb columns with msgspec (several times faster than the standard library).

    psycopg's loader setting is process-wide, which is what we want: every connection of the
    process reads event payloads, and the result (plain dicts and lists) is the same.
    """
    set_json_loads(msgspec.json.decode)


def _server_options(tenant_scoped: bool) -> str:
    options = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    return options + " " + role_option(APP_ROLE) if tenant_scoped else options


CallPool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]
"""Autocommit driver connections for the statements that are a whole transaction each."""


def create_call_pool(url: str, *, size: int, tenant_scoped: bool = False) -> CallPool:
    """Create (unopened: `await pool.open()`) a pool of autocommit psycopg connections.

    For the event store's hot calls, each one statement or one pipelined transaction that sets
    its own tenant: taking a connection from here skips SQLAlchemy's checkout, its greenlet and
    the isolation level set and reset around every use (measured: ~8 % of an API process's CPU
    on the message post). `tenant_scoped` as in `create_engine`. The pool keeps two connections
    open and grows to `size` while callers wait (a connection idle for ten minutes above two is
    closed); a connection found broken when it comes back is replaced in the background.
    """
    use_fast_json()
    return AsyncConnectionPool(
        libpq_url(url),
        kwargs={"autocommit": True, "options": _server_options(tenant_scoped)},
        min_size=min(2, size),
        max_size=size,
        open=False,
        name="calls-scoped" if tenant_scoped else "calls",
    )


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    tenant_scoped: bool = False,
    **options: Any,
) -> AsyncEngine:
    """Create the async engine for a database URL.

    `tenant_scoped` makes an engine for the API: its connections act as the `metachat_app` role
    (bound by row-level security) and every transaction acts for the context's tenant
    (`database.tenancy`). Otherwise the connections act as the URL's own user, the owner.
    `max_overflow` (default: `pool_size`) is how many connections beyond the pool may be opened
    at busy moments; each is closed again when it comes back to a full pool.
    """
    use_fast_json()
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        # No ping per checkout: it costs a round trip on every transaction (measured: 10-15 % of
        # append throughput). A connection the server dropped fails its statement once, and
        # SQLAlchemy then invalidates the pool; callers retry or answer 503.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"options": _server_options(tenant_scoped)},
        **options,
    )
    if tenant_scoped:
        scope_transactions(engine)
    return engine
