from collections.abc import AsyncIterator

import pytest_asyncio

from tests.integration.consumers.conftest import MakeHarness, make_harness  # noqa: F401
from tests.integration.orchestrator.support import World, a_world


@pytest_asyncio.fixture
async def world(make_harness: MakeHarness) -> AsyncIterator[World]:  # noqa: F811
    made = await a_world(await make_harness())
    yield made
    await made.orchestrator.close()
