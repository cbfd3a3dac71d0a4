"""The tenant the current unit of work acts for, carried through `contextvars`.

The API sets it once the caller is authenticated; the database layer reads it when a
transaction begins and hands it to PostgreSQL's row-level security (`database.tenancy`). A
context variable follows the request through every await and into the tasks it starts, and an
ASGI server runs each request in its own task, so one request's tenant never leaks into another.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[uuid.UUID | None] = ContextVar("metachat_tenant", default=None)


def current_tenant() -> uuid.UUID | None:
    """The tenant set for this context, or None (then a row-level-secured query sees nothing)."""
    return _current.get()


def enter_tenant(tenant_id: uuid.UUID) -> None:
    """Act for `tenant_id` from here to the end of the current context (the request's task)."""
    _current.set(tenant_id)


@contextmanager
def tenant_scope(tenant_id: uuid.UUID | None) -> Iterator[None]:
    """Act for `tenant_id` inside the block, then restore what was set before."""
    token = _current.set(tenant_id)
    try:
        yield
    finally:
        _current.reset(token)
