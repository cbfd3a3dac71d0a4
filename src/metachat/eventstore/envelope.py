"""The event envelope: metadata kept apart from the payload (eventsourcing's StoredEvent).

Events, envelopes and their metadata are never part of a reference cycle (they hold ids,
strings, times and plain JSON-like values), so they are not tracked by the cyclic garbage
collector (`gc=False`): processes keep many of them (the stream cache), and every tracked
object lengthens each full collection, a pause of the whole event loop.
"""

import uuid
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from metachat.kernel.actors import Actor


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every domain event payload. Subclasses set `type` and `version` as class vars.

    `type` is stable, dotted and past tense (`tenants.tenant_created`); `version` starts at 1 and
    grows with each incompatible change, the old shape being upcast on read.
    """

    type: ClassVar[str] = ""
    version: ClassVar[int] = 1


class Metadata(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Who and what caused an append; copied onto every event of that append."""

    tenant_id: uuid.UUID
    actor: Actor
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A recorded event: the public shape on the wire (`metachat.events`) and in the store."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    tenant_id: uuid.UUID
    stream_id: str
    stream_version: int
    position: int
    occurred_at: datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    actor: Actor
    payload: dict[str, Any]

    @property
    def routing_key(self) -> str:
        """`<tenant id>.<event type>`: consumers bind by tenant, by type, or both."""
        return f"{self.tenant_id}.{self.type}"


class Recorded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An envelope together with its decoded, upcast payload."""

    envelope: Envelope
    event: Event
