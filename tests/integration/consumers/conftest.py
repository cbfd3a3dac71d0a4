from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest_asyncio

from metachat.bootstrap import build
from metachat.settings import ConsumerSettings
from tests.conftest import make_settings
from tests.integration.consumers.support import Harness

MakeHarness = Callable[..., Awaitable[Harness]]


@pytest_asyncio.fixture
async def make_harness(new_database: Callable[[], str]) -> AsyncIterator[MakeHarness]:
    """Build harnesses (fresh database, own exchange and queues); tear all of them down after."""
    made: list[Harness] = []

    async def make(*, delivery_limit: int = 5, prefetch: int = 32) -> Harness:
        settings = msgspec.structs.replace(
            make_settings(new_database()),
            consumer=ConsumerSettings(delivery_limit=delivery_limit, prefetch=prefetch),
        )
        harness = Harness(deps=await build(settings, pool_size=8))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.deps.close()
        await harness.delete_broker_objects()


@pytest_asyncio.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()
