"""The PostgreSQL event store: one statement appends events and their outbox rows.

Positions come from a sequence, so they are taken at insert but become visible at commit; a
reader tailing by position could pass a lower position that commits later. `GapFreeReader`
prevents that with a visibility fence on transaction ids (see
architecture/decisions/0002-gap-free-reading.md).
"""

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.database.engine import CallPool
from metachat.eventstore.appends import AppendCalls, batch_parameter
from metachat.eventstore.driver import Driver, alone, autocommit, call, execute_append
from metachat.eventstore.envelope import Envelope, Event, Metadata, Recorded
from metachat.eventstore.notify import Notifier
from metachat.eventstore.registry import EventRegistry
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError, ValidationError
from metachat.kernel.ids import uuid7
from metachat.kernel.tenancy import current_tenant

# `pg_current_xact_id()` comes before `nextval()` in the select list on purpose: the executor
# evaluates it first, so a writer owns a transaction id before it owns a position. The gap-free
# reader's fence argument needs exactly that (a position can only be held by a transaction whose
# id is already assigned). The WHERE clause refuses an `expected_version` ahead of the stream.
_APPEND = """
WITH ev AS (
    INSERT INTO eventstore.events (
        tx_id, position, event_id, tenant_id, stream_id, stream_version, type, schema_version,
        occurred_at, correlation_id, causation_id, actor, payload)
    SELECT pg_current_xact_id(), nextval('eventstore.events_position_seq'),
           e.event_id, %(tenant_id)s, %(stream_id)s, e.stream_version, e.type, e.schema_version,
           %(occurred_at)s, %(correlation_id)s, %(causation_id)s, CAST(%(actor)s AS jsonb),
           e.payload
    FROM json_to_recordset(CAST(%(events)s AS json))
         AS e(event_id uuid, stream_version integer, type text, schema_version integer,
              payload jsonb)
    WHERE (SELECT coalesce(max(stream_version), 0) FROM eventstore.events
           WHERE stream_id = %(stream_id)s) = %(expected_version)s
    RETURNING position, event_id
)
INSERT INTO eventstore.outbox (position) SELECT position FROM ev
RETURNING position
"""

# Several appends, all or nothing, in one statement (migration 0014).
_APPEND_ALL = "SELECT entry, position FROM eventstore.append_all(CAST(%(batch)s AS json))"
MOVED_SQLSTATE = "MC409"
"""What `eventstore.append_all` raises when a stream had moved past its expected version."""

_COLUMNS = """position, event_id, tenant_id, stream_id, stream_version, type, schema_version,
    occurred_at, correlation_id, causation_id, actor, payload"""

_READ_STREAM = text(
    f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = :stream_id ORDER BY stream_version"
)
_READ_AFTER = f"""SELECT {_COLUMNS} FROM eventstore.events
WHERE stream_id = %(stream_id)s AND stream_version > %(after)s ORDER BY stream_version"""

# One statement, hence one snapshot: the rows and the snapshot bounds agree.
_READ_PAGE = text(f"""
SELECT pg_snapshot_xmin(s.snap)::text::bigint AS xmin,
       pg_snapshot_xmax(s.snap)::text::bigint AS xmax,
       e.*
FROM (SELECT pg_current_snapshot() AS snap) AS s
LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM eventstore.events
    WHERE position > :after ORDER BY position LIMIT :limit
) AS e ON true
""")

_actor_encoder = msgspec.json.Encoder()


class _EventRow(msgspec.Struct, frozen=True):
    """One event as the append statement reads it (`json_to_recordset`)."""

    event_id: uuid.UUID
    stream_version: int
    type: str
    schema_version: int
    payload: msgspec.Raw


_events_encoder = msgspec.json.Encoder()


def envelope_from_row(row: Any) -> Envelope:
    """Build an envelope from an events-table row."""
    actor = row.actor if isinstance(row.actor, dict) else msgspec.json.decode(row.actor)
    return Envelope(
        event_id=row.event_id,
        type=row.type,
        schema_version=row.schema_version,
        tenant_id=row.tenant_id,
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        position=row.position,
        occurred_at=row.occurred_at,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        actor=Actor(kind=actor["kind"], id=actor["id"]),
        payload=row.payload,
    )


def _holds_nul(value: object) -> bool:
    """True if a string anywhere in a JSON-like value (keys included) contains U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


@dataclass(frozen=True, slots=True)
class _Pending:
    """Events about to be appended, with the ids and time their envelopes will carry."""

    events: Sequence[Event]
    event_ids: list[uuid.UUID]
    occurred_at: datetime
    metadata: Metadata


class StreamMovedError(ConcurrencyError):
    """Another writer appended first; `newer` holds its events after the version expected."""

    def __init__(self, message: str, *, newer: list[Recorded], **extra: Any) -> None:
        super().__init__(message, **extra)
        self.newer = newer


class GapFreeReader:
    """Reads the global order without ever skipping a position that may still commit.

    A missing position below a visible one is held by a transaction that is running, or it is
    dead (rolled back, or burnt by a failed insert). When a gap is first seen, the snapshot's
    `xmax` becomes the fence: every transaction that could hold a position below the highest
    one seen has an id below it. Once the oldest running transaction (`xmin`) reaches the
    fence, those transactions have all ended and anything still missing below that highest
    position is dead. No wall clock is involved, so a slow writer is never skipped.
    """

    def __init__(self, store: "PostgresEventStore") -> None:
        self._store = store
        self._fence: int | None = None
        self._covered = 0
        self.held_at: int | None = None
        """The first missing position the reader is waiting for, if any (R2's mark)."""

    async def read(
        self, *, after: int, limit: int, conn: AsyncConnection | None = None
    ) -> list[Recorded]:
        """Return the next events after `after` that are safe to deliver, in position order."""
        if conn is None:
            async with self._store.engine.connect() as own:
                return await self.read(after=after, limit=limit, conn=own)
        rows = (await conn.execute(_READ_PAGE, {"after": after, "limit": limit})).all()
        xmin, xmax = rows[0].xmin, rows[0].xmax
        page = [row for row in rows if row.position is not None]
        dead_up_to = self._covered if self._fence is not None and xmin >= self._fence else after
        delivered: list[Any] = []
        expected = after + 1
        for row in page:
            if row.position != expected and row.position - 1 > dead_up_to:
                self.held_at = expected
                if self._fence is None or xmin >= self._fence:
                    self._fence, self._covered = xmax, page[-1].position
                break
            delivered.append(row)
            expected = row.position + 1
        else:
            self.held_at = None
        if self._fence is not None and xmin >= self._fence and expected > self._covered:
            self._fence = None
        return [self._store.decode_row(row) for row in delivered]


class PostgresEventStore:
    """The event store on PostgreSQL; events and outbox rows in one transaction, one statement."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: EventRegistry,
        notifier: Notifier | None = None,
        *,
        calls: CallPool | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.notifier = notifier
        self.calls = calls
        """Where `append_alone` and `read_stream_after` take their connection (the engine's when
        None); opened and closed by the store's owner, like the engine."""
        self._appends = AppendCalls(self.autocommit)

    def autocommit(self) -> AbstractAsyncContextManager[Driver]:
        """An autocommit driver connection: from the call pool, or under one of the engine's.

        For one-statement reads and writes outside any transaction (`driver.call`).
        """
        return autocommit(self.engine, self.calls)

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        conn: AsyncConnection | None = None,
    ) -> list[Recorded]:
        """Append events after `expected_version`; raise ConcurrencyError if another writer won.

        With `conn`, the append joins the caller's transaction (and the caller commits); without
        it, the append commits on its own and pokes the relay.
        """
        if not events:
            return []
        if conn is None:
            # The append is one statement, and one statement is atomic on its own: in autocommit
            # it is the whole transaction (events and outbox rows together) in one round trip,
            # instead of BEGIN, statement, COMMIT.
            async with self.engine.connect() as own:
                auto = await own.execution_options(isolation_level="AUTOCOMMIT")
                recorded = await self.append(
                    stream_id,
                    events,
                    expected_version=expected_version,
                    metadata=metadata,
                    conn=auto,
                )
            self.committed()
            return recorded
        params, pending = self._prepare(stream_id, events, expected_version, metadata)
        # No savepoint: a conflict aborts the caller's transaction, and every caller retries the
        # whole load-decide-append anyway, so a savepoint would only cost two round trips.
        try:
            positions = await execute_append(conn, _APPEND, params)
        except pg_errors.UniqueViolation as exc:
            raise self._conflict(stream_id, expected_version) from exc
        return self._placed(pending, positions, stream_id, expected_version)

    async def append_alone(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
    ) -> list[Recorded]:
        """Append in a transaction of its own, as the context's tenant, in one statement.

        The same effect as `append` inside `engine.begin()` (the tenant set for row-level
        security, the events and their outbox rows committed together), as one call of
        `eventstore.append_events` in autocommit (migration 0012) instead of BEGIN, the tenant
        setting, the append and COMMIT: the hot path of a command that decided from a state it
        already had. Appends that arrive while one is in flight go together in one call, one
        transaction per batch (`eventstore.appends`), each still its own append. Raises
        ConcurrencyError if another writer won; then nothing was written. Pokes the relay after
        the commit.

        When the stream had moved on, the error is a `StreamMovedError` carrying the events
        after `expected_version`, read in the same round trip: what the caller missed.
        """
        if not events:
            return []
        params, pending = self._prepare(stream_id, events, expected_version, metadata)
        tenant = current_tenant()
        params["scope"] = str(tenant) if tenant is not None else None
        try:
            rows = await self._appends.append(params)
        except pg_errors.UniqueViolation as exc:
            raise self._conflict(stream_id, expected_version) from exc
        if not rows or not rows[0].appended:
            # The function wrote nothing and answered the events after the expected version.
            raise StreamMovedError(
                f"stream {stream_id} has moved past version {expected_version}",
                newer=[self.decode_row(row) for row in rows],
                stream_id=stream_id,
                expected_version=expected_version,
            )
        positions = sorted(row.position for row in rows)
        placed = self._placed(pending, positions, stream_id, expected_version)
        self.committed()
        return placed

    async def append_together(
        self, appends: Sequence[tuple[str, Sequence[Event], int]], *, metadata: Metadata
    ) -> list[list[Recorded]]:
        """Append to several streams in one transaction of its own: all or nothing, one commit.

        Each `(stream, events, expected version)` is appended in the order given, as the
        context's tenant, by one call of `eventstore.append_all` (migration 0014) in autocommit:
        one round trip; the answer has what each append recorded, in the same order. Raises
        ConcurrencyError if another writer won on any of them; then nothing was written.
        """
        todo = [(stream, events, version) for stream, events, version in appends if events]
        if not todo:
            return [[] for _ in appends]
        prepared = [self._prepare(s, events, v, metadata) for s, events, v in todo]
        tenant = current_tenant()
        scope = str(tenant) if tenant is not None else None
        batch = batch_parameter([params | {"scope": scope} for params, _ in prepared])
        async with self.autocommit() as driver:
            try:
                rows = await call(driver, _APPEND_ALL, {"batch": batch})
            except psycopg.Error as exc:
                # A concurrent writer's row, or a stream that had moved on: nothing written.
                if isinstance(exc, pg_errors.UniqueViolation) or exc.sqlstate == MOVED_SQLSTATE:
                    raise self._conflict(", ".join(s for s, _, _ in todo), todo[0][2]) from exc
                raise
        positions: list[list[int]] = [[] for _ in todo]
        for row in rows:
            positions[row.entry - 1].append(row.position)
        placed = iter(
            self._placed(pending, sorted(taken), stream, version)
            for (_, pending), taken, (stream, _, version) in zip(
                prepared, positions, todo, strict=True
            )
        )
        self.committed()
        return [next(placed) if events else [] for _, events, _ in appends]

    def _prepare(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int,
        metadata: Metadata,
    ) -> tuple[dict[str, Any], _Pending]:
        """The append statement's parameters, and what `_placed` needs to record the events."""
        payloads = [self.registry.encode(e) for e in events]
        if any(b"\\u0000" in p for p in payloads) and any(
            _holds_nul(self.registry.to_builtins(e)) for e in events
        ):
            # jsonb and text columns reject U+0000: refused here, before any write, it is a clear
            # 422 for every context instead of a 500 from deep inside a transaction. (The JSON
            # spells it `\u0000`; only then is the payload searched, since that spelling may
            # also be a text's own backslash followed by `u0000`.)
            raise ValidationError("text must not contain NUL (U+0000) characters")
        pending = _Pending(
            events=events,
            event_ids=[uuid7() for _ in events],
            occurred_at=datetime.now(UTC),
            metadata=metadata,
        )
        params = {
            "tenant_id": metadata.tenant_id,
            "stream_id": stream_id,
            "expected_version": expected_version,
            "occurred_at": pending.occurred_at,
            "correlation_id": metadata.correlation_id,
            "causation_id": metadata.causation_id,
            "actor": _actor_encoder.encode(metadata.actor).decode(),
            # One JSON text for all the events, not five arrays: psycopg dumps an array element
            # by element (escaping each payload with a regular expression), which measured
            # about a fifth of a post's CPU in the API process; a text parameter is sent as is.
            "events": _events_encoder.encode(
                [
                    _EventRow(
                        event_id=event_id,
                        stream_version=expected_version + offset,
                        type=type(event).type,
                        schema_version=type(event).version,
                        payload=msgspec.Raw(payload),
                    )
                    for offset, (event_id, event, payload) in enumerate(
                        zip(pending.event_ids, events, payloads, strict=True), start=1
                    )
                ]
            ).decode(),
        }
        return params, pending

    def _placed(
        self, pending: "_Pending", positions: list[int], stream_id: str, expected_version: int
    ) -> list[Recorded]:
        """The events as recorded at the positions the append took; a short answer: conflict."""
        if len(positions) != len(pending.events):
            raise self._conflict(stream_id, expected_version)
        metadata = pending.metadata
        return [
            Recorded(
                envelope=Envelope(
                    event_id=event_id,
                    type=type(event).type,
                    schema_version=type(event).version,
                    tenant_id=metadata.tenant_id,
                    stream_id=stream_id,
                    stream_version=expected_version + offset,
                    position=position,
                    occurred_at=pending.occurred_at,
                    correlation_id=metadata.correlation_id,
                    causation_id=metadata.causation_id,
                    actor=metadata.actor,
                    payload=self.registry.to_builtins(event),
                ),
                event=event,
            )
            for offset, (event_id, event, position) in enumerate(
                zip(pending.event_ids, pending.events, positions, strict=True), start=1
            )
        ]

    def committed(self) -> None:
        """Tell the relay that a transaction with events committed (a hint, never a guarantee)."""
        if self.notifier is not None:
            self.notifier.poke()

    @staticmethod
    def _conflict(stream_id: str, expected_version: int) -> ConcurrencyError:
        return ConcurrencyError(
            f"stream {stream_id} has moved past version {expected_version}",
            stream_id=stream_id,
            expected_version=expected_version,
        )

    def decode_row(self, row: Any) -> Recorded:
        """Decode an events-table row, upcasting its payload to the current version."""
        envelope = envelope_from_row(row)
        event = self.registry.decode(envelope.type, envelope.schema_version, envelope.payload)
        return Recorded(envelope=envelope, event=event)

    async def read_stream(
        self, stream_id: str, *, conn: AsyncConnection | None = None
    ) -> list[Recorded]:
        """Return every event of a stream in version order, upcast to current versions."""
        if conn is None:
            async with self.engine.connect() as own:
                return await self.read_stream(stream_id, conn=own)
        rows = (await conn.execute(_READ_STREAM, {"stream_id": stream_id})).all()
        return [self.decode_row(row) for row in rows]

    async def read_stream_after(self, stream_id: str, version: int) -> list[Recorded]:
        """Return a stream's events after `version`, as the context's tenant, in one round trip.

        How a process catches up a stream it remembers up to `version` (empty: it is current).
        """
        async with self.autocommit() as driver:
            (rows,) = await alone(
                driver, (_READ_AFTER, {"stream_id": stream_id, "after": version}), named=True
            )
        return [self.decode_row(row) for row in rows]

    def reader(self) -> GapFreeReader:
        """Return a stateful gap-free reader for one subscriber (projection, catch-up, rebuild)."""
        return GapFreeReader(self)

    async def read_all(self, *, after: int, limit: int) -> list[Recorded]:
        """Return committed events after `after`, gap-free, retrying once past dead gaps."""
        reader = self.reader()
        page = await reader.read(after=after, limit=limit)
        if reader.held_at is not None:
            page += await reader.read(
                after=page[-1].envelope.position if page else after, limit=limit - len(page)
            )
        return page

    async def last_position(self) -> int:
        """Return the highest committed position (0 when empty)."""
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                text("SELECT coalesce(max(position), 0) FROM eventstore.events")
            )
        return int(value or 0)


def new_correlation_id() -> uuid.UUID:
    """Return a fresh correlation id for a change that starts here."""
    return uuid7()
