"""`GET /metrics`: backbone figures in the Prometheus text format, computed at scrape time.

Everything is read from the database (and the broker, for queue depths) when scraped, not from
counters in this process: the relay, the projector and the consumers may run as separate
processes, and any API replica must report the same truth (R15: head, checkpoints, lag in
positions and seconds, loop heartbeats).
"""

from collections.abc import Iterator
from typing import Any

import msgspec
import structlog
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.api.broker import BrokerProbe
from metachat.bootstrap import Deps

log = structlog.get_logger()

DLQ_SUFFIX = ".dlq"
"""A consumer's queue is `<queue_prefix><consumer>`; its dead-letter queue adds this suffix."""

_AGE = "extract(epoch FROM clock_timestamp() - {})::float8"

_HEAD = text("SELECT coalesce(max(position), 0) FROM eventstore.events")

_OUTBOX = text(f"""
SELECT count(*) AS depth,
       count(*) FILTER (WHERE attempts > 0) AS failing,
       coalesce({_AGE.format("min(created_at)")}, 0) AS oldest_age
FROM eventstore.outbox
""")

_LOOPS = text(f"""
SELECT name, processed, {_AGE.format("beat_at")} AS age FROM eventstore.heartbeats ORDER BY name
""")

# The oldest event a projection has not processed gives its lag in seconds; the lateral lookup
# walks the events primary key, so it costs one index probe per projection.
_PROJECTIONS = text(f"""
SELECT c.name, c.position, c.generation, c.held_at,
       {_AGE.format("c.heartbeat_at")} AS heartbeat_age,
       coalesce({_AGE.format("n.occurred_at")}, 0) AS lag_seconds
FROM eventstore.checkpoints AS c
LEFT JOIN LATERAL (
    SELECT occurred_at FROM eventstore.events
    WHERE position > c.position ORDER BY position LIMIT 1
) AS n ON true
ORDER BY c.name
""")

# Consumers are discovered from their marks and their tracking records. The position is the
# last event a consumer recorded, or its starting mark when it has recorded nothing since.
_CONSUMERS = text("""
WITH names AS (
    SELECT consumer FROM eventstore.consumer_marks
    UNION SELECT DISTINCT consumer FROM eventstore.tracking
), tracked AS (
    SELECT consumer, max(position) AS position FROM eventstore.tracking GROUP BY consumer
)
SELECT n.consumer, greatest(coalesce(t.position, 0), coalesce(m.start_position, 0)) AS position
FROM names AS n
LEFT JOIN tracked AS t USING (consumer)
LEFT JOIN eventstore.consumer_marks AS m USING (consumer)
ORDER BY n.consumer
""")


class Snapshot(msgspec.Struct, kw_only=True):
    """Backbone figures read in one scrape."""

    head: int
    outbox: Any
    loops: list[Any]
    projections: list[Any]
    consumers: list[Any]
    queue_prefix: str
    queue_depths: dict[str, int]
    broker_up: bool


async def _read_database(conn: AsyncConnection) -> dict[str, Any]:
    return {
        "head": int(await conn.scalar(_HEAD) or 0),
        "outbox": (await conn.execute(_OUTBOX)).one(),
        "loops": list((await conn.execute(_LOOPS)).all()),
        "projections": list((await conn.execute(_PROJECTIONS)).all()),
        "consumers": list((await conn.execute(_CONSUMERS)).all()),
    }


async def _queue_depths(probe: BrokerProbe, queues: list[str]) -> tuple[bool, dict[str, int]]:
    depths: dict[str, int] = {}
    try:
        await probe.ping()
        for queue in queues:
            depth = await probe.queue_depth(queue)
            if depth is not None:
                depths[queue] = depth
    except Exception as exc:  # a broker outage is itself a figure (broker_up 0)
        log.warning("metrics_broker_unavailable", error=str(exc) or type(exc).__name__)
        return False, depths
    return True, depths


async def collect(deps: Deps, probe: BrokerProbe) -> Snapshot:
    """Read every figure from the database and the broker."""
    # REPEATABLE READ: all the queries see one snapshot, so lag = head - position never mixes
    # a head read after a checkpoint moved with a position read before it.
    async with deps.engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            figures = await _read_database(conn)
    prefix = deps.settings.amqp.queue_prefix
    queues = [
        f"{prefix}{row.consumer}{suffix}"
        for row in figures["consumers"]
        for suffix in ("", DLQ_SUFFIX)
    ]
    broker_up, depths = await _queue_depths(probe, queues)
    return Snapshot(**figures, queue_prefix=prefix, queue_depths=depths, broker_up=broker_up)


def _gauge(
    name: str, doc: str, value: float | None = None, labels: list[str] | None = None
) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels)


def _backbone(snap: Snapshot) -> Iterator[Metric]:
    yield _gauge("metachat_events_head_position", "Highest committed event position", snap.head)
    yield _gauge(
        "metachat_outbox_depth", "Events not yet confirmed by the broker", snap.outbox.depth
    )
    yield _gauge(
        "metachat_outbox_failing",
        "Outbox rows whose publishing failed at least once",
        snap.outbox.failing,
    )
    yield _gauge(
        "metachat_outbox_oldest_age_seconds",
        "Age of the oldest unpublished event",
        snap.outbox.oldest_age,
    )
    yield _gauge(
        "metachat_broker_up", "1 when RabbitMQ answered this scrape", float(snap.broker_up)
    )
    relay = next((row for row in snap.loops if row.name == "relay"), None)
    published = CounterMetricFamily("metachat_relay_published", "Events the relay leader published")
    relay_age = _gauge(
        "metachat_relay_heartbeat_age_seconds", "Seconds since the relay's last heartbeat"
    )
    if relay is not None:
        published.add_metric([], relay.processed)
        relay_age.add_metric([], relay.age)
    yield published
    yield relay_age
    loop_age = _gauge(
        "metachat_loop_heartbeat_age_seconds", "Seconds since a loop's heartbeat", labels=["name"]
    )
    loop_done = CounterMetricFamily(
        "metachat_loop_processed", "Items a loop processed", labels=["name"]
    )
    for row in snap.loops:
        loop_age.add_metric([row.name], row.age)
        loop_done.add_metric([row.name], row.processed)
    yield loop_age
    yield loop_done


def _projections(snap: Snapshot) -> Iterator[Metric]:
    labels = ["projection"]
    position = _gauge("metachat_projection_position", "Last processed position", labels=labels)
    lag = _gauge("metachat_projection_lag_events", "Positions behind the head", labels=labels)
    lag_s = _gauge(
        "metachat_projection_lag_seconds", "Age of the oldest unprocessed event", labels=labels
    )
    beat = _gauge(
        "metachat_projection_heartbeat_age_seconds",
        "Seconds since the runner's heartbeat",
        labels=labels,
    )
    generation = _gauge(
        "metachat_projection_generation", "Read-model generation in use", labels=labels
    )
    held = _gauge(
        "metachat_projection_held_at",
        "Position the gap-free reader waits for (a transaction still holds it); absent if none",
        labels=labels,
    )
    for row in snap.projections:
        position.add_metric([row.name], row.position)
        if row.held_at is not None:
            held.add_metric([row.name], row.held_at)
        lag.add_metric([row.name], max(snap.head - row.position, 0))
        lag_s.add_metric([row.name], row.lag_seconds)
        generation.add_metric([row.name], row.generation)
        if row.heartbeat_age is not None:
            beat.add_metric([row.name], row.heartbeat_age)
    yield from (position, lag, lag_s, beat, generation, held)


def _consumers(snap: Snapshot) -> Iterator[Metric]:
    labels = ["consumer"]
    position = _gauge(
        "metachat_consumer_position",
        "Position of the last event a consumer recorded",
        labels=labels,
    )
    lag = _gauge(
        "metachat_consumer_lag_events",
        "Positions behind the head since the consumer's last recorded event (events it does not "
        "subscribe to count too; see the queue depth for its real backlog)",
        labels=labels,
    )
    depth = _gauge(
        "metachat_consumer_queue_depth", "Ready messages in the consumer's queue", labels=labels
    )
    dead = _gauge(
        "metachat_consumer_dead_letters",
        "Messages in the consumer's dead-letter queue",
        labels=labels,
    )
    for row in snap.consumers:
        position.add_metric([row.consumer], row.position)
        lag.add_metric([row.consumer], max(snap.head - row.position, 0))
        queue = f"{snap.queue_prefix}{row.consumer}"
        if queue in snap.queue_depths:
            depth.add_metric([row.consumer], snap.queue_depths[queue])
        if queue + DLQ_SUFFIX in snap.queue_depths:
            dead.add_metric([row.consumer], snap.queue_depths[queue + DLQ_SUFFIX])
    yield from (position, lag, depth, dead)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from _backbone(self._snapshot)
        yield from _projections(self._snapshot)
        yield from _consumers(self._snapshot)


def render(snapshot: Snapshot) -> bytes:
    """Render a snapshot in the Prometheus text exposition format."""
    return generate_latest(_SnapshotCollector(snapshot))


class MetricsController(Controller):
    """Prometheus scrape endpoint (no authentication: expose it on an internal network only)."""

    path = "/metrics"
    tags = ["health"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(
        self, deps: NamedDependency[Deps], broker_probe: NamedDependency[BrokerProbe]
    ) -> Response[bytes]:
        """Return the backbone figures, read now from the database and the broker."""
        body = render(await collect(deps, broker_probe))
        return Response(body, media_type=CONTENT_TYPE_LATEST)
