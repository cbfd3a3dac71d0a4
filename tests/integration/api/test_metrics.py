"""`/metrics`: figures read from the database and the broker at scrape time."""

import uuid

import aio_pika
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.integration.api.conftest import write_relay_heartbeat

NAMES = {
    "metachat_events_head_position",
    "metachat_outbox_depth",
    "metachat_outbox_failing",
    "metachat_outbox_oldest_age_seconds",
    "metachat_broker_up",
    "metachat_relay_published",
    "metachat_relay_heartbeat_age_seconds",
    "metachat_loop_heartbeat_age_seconds",
    "metachat_loop_processed",
    "metachat_projection_position",
    "metachat_projection_lag_events",
    "metachat_projection_lag_seconds",
    "metachat_projection_heartbeat_age_seconds",
    "metachat_projection_generation",
    "metachat_consumer_position",
    "metachat_consumer_lag_events",
    "metachat_consumer_queue_depth",
    "metachat_consumer_dead_letters",
}


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


async def _scrape(client) -> tuple[set[str], dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    return families, _samples(response.text)


class TestMetrics:
    async def test_exposes_every_metric_name(self, client) -> None:
        names, _ = await _scrape(client)
        assert names >= NAMES

    @pytest.mark.usefixtures("tenant")  # at least one event exists
    async def test_outbox_and_head_match_the_database(self, client, api_deps) -> None:
        async with api_deps.engine.connect() as conn:
            head = await conn.scalar(text("SELECT max(position) FROM eventstore.events"))
            depth = await conn.scalar(text("SELECT count(*) FROM eventstore.outbox"))
        _, samples = await _scrape(client)
        assert samples[("metachat_events_head_position", ())] == head
        assert samples[("metachat_outbox_depth", ())] == depth
        assert depth > 0  # nothing relays in this database
        assert samples[("metachat_outbox_oldest_age_seconds", ())] >= 0
        assert samples[("metachat_broker_up", ())] == 1

    async def test_relay_heartbeat_and_published_total(self, client, api_deps) -> None:
        await write_relay_heartbeat(api_deps, age_seconds=5)
        _, samples = await _scrape(client)
        assert samples[("metachat_relay_published_total", ())] == 7
        assert samples[("metachat_relay_heartbeat_age_seconds", ())] >= 5
        assert samples[("metachat_loop_heartbeat_age_seconds", (("name", "relay"),))] >= 5

    @pytest.mark.usefixtures("tenant")  # at least one event exists
    async def test_projection_position_and_lag(self, client, api_deps) -> None:
        name = f"metrics-test-{uuid.uuid4().hex[:6]}"
        async with api_deps.engine.begin() as conn:
            head = await conn.scalar(text("SELECT max(position) FROM eventstore.events"))
            await conn.execute(
                text("""INSERT INTO eventstore.checkpoints (name, position, heartbeat_at)
                        VALUES (:n, :p, now())"""),
                {"n": name, "p": head - 1},
            )
        _, samples = await _scrape(client)
        labels = (("projection", name),)
        assert samples[("metachat_projection_position", labels)] == head - 1
        assert samples[("metachat_projection_lag_events", labels)] >= 1
        assert samples[("metachat_projection_lag_seconds", labels)] > 0
        assert samples[("metachat_projection_heartbeat_age_seconds", labels)] >= 0

    @pytest.mark.usefixtures("tenant")  # at least one event exists
    async def test_consumer_position_lag_and_queue_depth(self, client, api_deps) -> None:
        consumer = f"metrics.{uuid.uuid4().hex[:6]}"
        queue_name = f"{api_deps.settings.amqp.queue_prefix}{consumer}"
        async with api_deps.engine.begin() as conn:
            head = await conn.scalar(text("SELECT max(position) FROM eventstore.events"))
            await conn.execute(
                text(
                    "INSERT INTO eventstore.consumer_marks (consumer, start_position) VALUES (:c, 0)"
                ),
                {"c": consumer},
            )
            await conn.execute(
                text("""INSERT INTO eventstore.tracking (consumer, event_id, position)
                        VALUES (:c, :e, :p)"""),
                {"c": consumer, "e": uuid.uuid4(), "p": head - 1},
            )
        connection = await aio_pika.connect(api_deps.settings.amqp.url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, auto_delete=False)
            dlq = await channel.declare_queue(f"{queue_name}.dlq", auto_delete=False)
            for body, target in ((b"1", queue), (b"2", queue), (b"3", queue), (b"x", dlq)):
                await channel.default_exchange.publish(
                    aio_pika.Message(body), routing_key=target.name
                )
            _, samples = await _scrape(client)
            for declared in (queue, dlq):
                await declared.delete(if_unused=False, if_empty=False)
        finally:
            await connection.close()
        labels = (("consumer", consumer),)
        assert samples[("metachat_consumer_position", labels)] == head - 1
        assert samples[("metachat_consumer_lag_events", labels)] >= 1
        assert samples[("metachat_consumer_queue_depth", labels)] == 3
        assert samples[("metachat_consumer_dead_letters", labels)] == 1

    async def test_a_consumer_without_a_queue_has_no_depth_sample(self, client, api_deps) -> None:
        consumer = f"metrics.noqueue.{uuid.uuid4().hex[:6]}"
        async with api_deps.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO eventstore.consumer_marks (consumer, start_position) VALUES (:c, 0)"
                ),
                {"c": consumer},
            )
        _, samples = await _scrape(client)
        labels = (("consumer", consumer),)
        assert ("metachat_consumer_position", labels) in samples
        assert ("metachat_consumer_queue_depth", labels) not in samples
        assert samples[("metachat_broker_up", ())] == 1
