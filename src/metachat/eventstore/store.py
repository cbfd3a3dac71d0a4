"""The event store port and its in-memory implementation (for unit tests and the contract suite)."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from metachat.eventstore.envelope import Envelope, Event, Metadata, Recorded
from metachat.eventstore.registry import EventRegistry
from metachat.kernel.errors import ConcurrencyError
from metachat.kernel.ids import uuid7

NO_STREAM = 0
"""Expected version of a stream that must not exist yet."""


class EventStore(Protocol):
    """Append-only store of events, one ordered stream per aggregate, one global order overall."""

    registry: EventRegistry

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        conn: Any = None,
    ) -> list[Recorded]:
        """Append events after `expected_version`; raise ConcurrencyError if another writer won."""
        ...

    async def read_stream(self, stream_id: str, *, conn: Any = None) -> list[Recorded]:
        """Return every event of a stream in version order, upcast to current versions."""
        ...

    async def read_all(self, *, after: int, limit: int) -> list[Recorded]:
        """Return committed events with position > `after`, in position order, without gaps."""
        ...

    async def last_position(self) -> int:
        """Return the highest committed position (0 when empty)."""
        ...


def make_envelope(
    registry: EventRegistry,
    event: Event,
    *,
    stream_id: str,
    stream_version: int,
    position: int,
    metadata: Metadata,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap a payload in its envelope."""
    return Envelope(
        event_id=event_id or uuid7(),
        type=type(event).type,
        schema_version=type(event).version,
        tenant_id=metadata.tenant_id,
        stream_id=stream_id,
        stream_version=stream_version,
        position=position,
        occurred_at=occurred_at or datetime.now(UTC),
        correlation_id=metadata.correlation_id,
        causation_id=metadata.causation_id,
        actor=metadata.actor,
        payload=registry.to_builtins(event),
    )


class InMemoryEventStore:
    """A store in a list: same contract as PostgreSQL, for unit tests and fast feedback."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry
        self._events: list[Recorded] = []
        self._streams: dict[str, list[Recorded]] = {}

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        conn: Any = None,  # noqa: ARG002 - the port lets a caller join its transaction
    ) -> list[Recorded]:
        """Append events after `expected_version`; raise ConcurrencyError if another writer won."""
        stream = self._streams.get(stream_id, [])
        if len(stream) != expected_version:
            raise ConcurrencyError(
                f"stream {stream_id} is at version {len(stream)}, not {expected_version}",
                actual_version=len(stream),
            )
        recorded = []
        for offset, event in enumerate(events, start=1):
            envelope = make_envelope(
                self.registry,
                event,
                stream_id=stream_id,
                stream_version=expected_version + offset,
                position=len(self._events) + offset,
                metadata=metadata,
            )
            # Round-trip through JSON so the in-memory store is exactly as strict as PostgreSQL.
            wire = msgspec.json.decode(msgspec.json.encode(envelope.payload))
            payload = self.registry.decode(envelope.type, envelope.schema_version, wire)
            recorded.append(Recorded(envelope=envelope, event=payload))
        self._events.extend(recorded)
        self._streams[stream_id] = stream + recorded
        return recorded

    async def read_stream(self, stream_id: str, *, conn: Any = None) -> list[Recorded]:  # noqa: ARG002
        """Return every event of a stream in version order."""
        return list(self._streams.get(stream_id, []))

    async def read_all(self, *, after: int, limit: int) -> list[Recorded]:
        """Return events with position > `after` in position order."""
        return self._events[after : after + limit]

    async def last_position(self) -> int:
        """Return the highest position (0 when empty)."""
        return len(self._events)
