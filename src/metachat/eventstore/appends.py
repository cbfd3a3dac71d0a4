"""One-statement appends gathered into one call while the database is busy (group commit).

`PostgresEventStore.append_alone` is the API's hot path: each command decided from the stream
cache is one call of `eventstore.append_events` in autocommit, so each request used to cost its
own driver round trip, transaction, commit and WAL flush. Here the appends that arrive while
one is on its way are gathered and sent together as one call of `eventstore.append_batch`
(migration 0013): under load the driver's and the database's per-statement work is paid once
per batch, not once per request. An append that finds nothing in flight goes out at once (no
linger), so an idle server answers as fast as before.

Each entry is its own append: its own tenant, its own version check, its own answer (the rows
`append_events` gives, or what the stream had that it missed). If the batch fails (a unique
violation from a concurrent writer, a row the database refuses) nothing of it was written, and
each entry is run again on its own (`Batcher`), so the error reaches its own writer only.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec

from metachat.eventstore.batches import Batcher
from metachat.eventstore.driver import Driver, call

APPEND_CALL = """
SELECT * FROM eventstore.append_events(
    CAST(%(scope)s AS uuid), %(tenant_id)s, %(stream_id)s, %(expected_version)s, %(occurred_at)s,
    %(correlation_id)s, %(causation_id)s, CAST(%(actor)s AS jsonb), CAST(%(events)s AS json))
"""
"""One append (migration 0012): the tenant, the append and, when the stream had moved on, the
events after the expected version; in autocommit it is its own transaction."""

_APPEND_BATCH = "SELECT * FROM eventstore.append_batch(CAST(%(batch)s AS json))"

BATCH_SIZE = 64
"""The most appends sent in one call; more wait for the next."""

_KEYS = (
    "scope",
    "tenant_id",
    "stream_id",
    "expected_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
)
_batch_encoder = msgspec.json.Encoder()


def batch_parameter(appends: Sequence[dict[str, Any]]) -> str:
    """The JSON array `eventstore.append_batch` reads: each append's parameters, as given.

    `actor` and `events` are JSON texts already (`PostgresEventStore._prepare`), embedded as
    they are.
    """
    entries = [
        {key: params[key] for key in _KEYS}
        | {"actor": msgspec.Raw(params["actor"]), "events": msgspec.Raw(params["events"])}
        for params in appends
    ]
    return _batch_encoder.encode(entries).decode()


class AppendCalls:
    """Sends one-statement appends, gathering those that arrive while one is in flight."""

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[Driver]],
        *,
        size: int = BATCH_SIZE,
    ) -> None:
        self._connection = connection
        self._batcher: Batcher[dict[str, Any], list[Any]] = Batcher(
            apply_batch=self._batch,
            apply_one=self.one,
            size=size,
            linger=0.0,
            name="appends",
            single_alone=True,
        )

    async def append(self, params: dict[str, Any]) -> list[Any]:
        """The rows `eventstore.append_events` answers for this append (with the next batch)."""
        return await self._batcher.submit(params)

    async def one(self, params: dict[str, Any]) -> list[Any]:
        """Run one append on its own."""
        async with self._connection() as driver:
            return await call(driver, APPEND_CALL, params)

    async def _batch(self, appends: Sequence[dict[str, Any]]) -> list[list[Any]]:
        async with self._connection() as driver:
            rows = await call(driver, _APPEND_BATCH, {"batch": batch_parameter(appends)})
        answers: defaultdict[int, list[Any]] = defaultdict(list)
        for row in rows:
            answers[row.entry].append(row)
        return [answers[number] for number in range(1, len(appends) + 1)]
