from collections.abc import AsyncIterator, Callable

import pytest_asyncio

from metachat.bootstrap import Deps, build
from tests.conftest import make_settings


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    """A fresh migrated database per test: projections count rows and compare whole models."""
    built = await build(make_settings(new_database()), pool_size=8)
    yield built
    await built.close()
