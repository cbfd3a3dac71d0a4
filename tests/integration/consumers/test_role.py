"""The consumers role: start-up against an unreachable broker, and the lag figures for /metrics."""

import asyncio

import msgspec

from metachat.analytics import ACTIVITY_CONSUMER
from metachat.eventstore.consumer import ConsumerSpec
from metachat.settings import AmqpSettings
from metachat.worker.consumers_role import ConsumerLag, consumer_lag, run_consumers
from tests.integration.consumers.conftest import MakeHarness
from tests.integration.consumers.support import Harness, make_history, tracked
from tests.waiting import eventually


class TestStart:
    async def test_unreachable_broker_is_retried_until_stop(self, harness: Harness) -> None:
        amqp = AmqpSettings(url="amqp://guest:guest@127.0.0.1:1/", exchange="x", queue_prefix="y.")
        settings = msgspec.structs.replace(harness.settings, amqp=amqp)
        deps = msgspec.structs.replace(harness.deps, settings=settings)
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_consumers(deps, stop, specs=[ACTIVITY_CONSUMER], started=started)
        )
        await asyncio.sleep(1.5)
        assert not task.done()  # still retrying: an unreachable broker is not a crash
        stop.set()
        await task
        assert not started.is_set()


class TestConsumerLag:
    async def test_reports_depths_and_last_position(self, make_harness: MakeHarness) -> None:
        harness = await make_harness()
        events = await make_history(harness.deps, tenants=1, renames=2)
        idle = ConsumerSpec(name="test.never_started", binding_keys=("#",), handler=_noop)
        async with harness.running([ACTIVITY_CONSUMER]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _tracked(harness, ACTIVITY_CONSUMER.name, len(events)))
        lags = await consumer_lag(harness.deps, specs=[ACTIVITY_CONSUMER, idle])
        assert lags == {
            ACTIVITY_CONSUMER.name: ConsumerLag(
                queue_depth=0, dlq_depth=0, last_position=events[-1].envelope.position
            ),
            idle.name: ConsumerLag(queue_depth=None, dlq_depth=None, last_position=0),
        }


async def _noop(*_: object) -> None:
    return None


async def _tracked(harness: Harness, consumer: str, count: int) -> bool:
    return await tracked(harness.deps.engine, consumer) >= count
