"""Rendering a metrics snapshot in the Prometheus text format."""

from types import SimpleNamespace as Row

from prometheus_client.parser import text_string_to_metric_families

from metachat.api.metrics import Snapshot, render


def samples(snapshot: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(snapshot).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def snapshot(**overrides: object) -> Snapshot:
    values: dict[str, object] = {
        "head": 120,
        "outbox": Row(depth=4, failing=1, oldest_age=2.5),
        "loops": [Row(name="relay", processed=99, age=1.5)],
        "projections": [
            Row(
                name="tenant_directory",
                position=100,
                generation=2,
                held_at=101,
                heartbeat_age=0.5,
                lag_seconds=3.0,
            )
        ],
        "consumers": [Row(consumer="analytics.activity", position=110)],
        "queue_prefix": "p.",
        "queue_depths": {"p.analytics.activity": 7, "p.analytics.activity.dlq": 2},
        "broker_up": True,
    }
    values.update(overrides)
    return Snapshot(**values)  # type: ignore[arg-type]


def test_renders_backbone_projection_and_consumer_figures() -> None:
    got = samples(snapshot())
    assert got[("metachat_events_head_position", ())] == 120
    assert got[("metachat_outbox_depth", ())] == 4
    assert got[("metachat_outbox_failing", ())] == 1
    assert got[("metachat_relay_published_total", ())] == 99
    assert got[("metachat_relay_heartbeat_age_seconds", ())] == 1.5
    projection = (("projection", "tenant_directory"),)
    assert got[("metachat_projection_lag_events", projection)] == 20
    assert got[("metachat_projection_generation", projection)] == 2
    assert got[("metachat_projection_held_at", projection)] == 101
    consumer = (("consumer", "analytics.activity"),)
    assert got[("metachat_consumer_lag_events", consumer)] == 10
    assert got[("metachat_consumer_queue_depth", consumer)] == 7
    assert got[("metachat_consumer_dead_letters", consumer)] == 2


def test_a_missing_relay_heartbeat_leaves_the_relay_series_empty() -> None:
    got = samples(snapshot(loops=[], broker_up=False, queue_depths={}))
    assert ("metachat_relay_heartbeat_age_seconds", ()) not in got
    assert got[("metachat_broker_up", ())] == 0
    assert not any(name == "metachat_consumer_queue_depth" for name, _ in got)
