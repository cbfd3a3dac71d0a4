"""Broker consumers of the analytics context."""

from metachat.analytics.projections import on_event
from metachat.eventstore.consumer import ConsumerSpec

ACTIVITY_CONSUMER = ConsumerSpec(
    name="analytics.activity",
    binding_keys=("#",),
    handler=on_event,
    side_effects=False,  # it only writes its own table, so replaying history is what it wants
)
"""Counts every event of every tenant into `analytics.daily_activity`."""
