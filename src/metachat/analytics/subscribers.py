"""Broker consumers of the analytics context."""

from metachat.analytics.projections import on_event, on_events
from metachat.eventstore.consumer import ConsumerSpec

ACTIVITY_CONSUMER = ConsumerSpec(
    name="analytics.activity",
    binding_keys=("#",),
    handler=on_event,
    side_effects=False,  # it only writes its own table, so replaying history is what it wants
    # Every event of the platform comes here (four per customer message answered): the messages
    # in hand are counted in one transaction, a few counter rows per batch, instead of one
    # transaction per event queueing on the same hot rows. Daily figures can wait 50 ms.
    batch_handler=on_events,
    prefetch=256,
    batch_size=256,
    batch_linger=0.05,
)
"""Counts every event of every tenant into `analytics.daily_activity`."""
