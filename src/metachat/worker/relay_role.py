"""The relay role: publish the outbox to RabbitMQ while this process holds the relay lease."""

import asyncio

from metachat.bootstrap import Deps
from metachat.eventstore.relay import Relay
from metachat.worker.consumers_role import declare_consumer_queues


async def run_relay(deps: Deps, stop: asyncio.Event) -> None:
    """Run the outbox relay (leader or standby) until `stop` is set.

    Several processes may run this role: one leads, the others stand by and take over within
    `settings.relay.lease_retry` seconds when the leader's database session ends.
    """
    if not await declare_consumer_queues(deps.settings, stop):
        return  # stopped before the broker answered
    relay = Relay(deps.settings, database_url=deps.database_url)
    await relay.run(stop)
