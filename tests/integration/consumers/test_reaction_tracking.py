"""A reaction's tracking: checked before, written after, on the call pool or the engine;
gathered across the reactions in flight.

The same outcomes either way: the first delivery runs the reaction and records it; a repeat is
a duplicate and does not run it again.
"""

import asyncio
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import pytest_asyncio
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.eventstore.consumer import ConsumerRunner, ConsumerSpec, Outcome
from metachat.eventstore.envelope import Recorded
from tests.conftest import make_settings
from tests.integration.consumers.support import make_history

_TRACKED = text("SELECT count(*) FROM eventstore.tracking WHERE consumer = :c")
_TRANSACTIONS = text(
    "SELECT count(DISTINCT xmin::text) FROM eventstore.tracking WHERE consumer = :c"
)


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=2)
    yield built
    await built.close()


@pytest.mark.parametrize("pooled", [True, False], ids=["call pool", "engine"])
async def test_a_reaction_runs_once_per_event(deps: Deps, pooled: bool) -> None:
    events = await make_history(deps, tenants=1, renames=2)
    seen: list[int] = []

    async def react(recorded: Recorded) -> None:
        seen.append(recorded.envelope.position)

    spec = ConsumerSpec(name=f"test.reaction.{pooled}", binding_keys=("#",), reaction=react)
    runner = ConsumerRunner(
        spec,
        engine=deps.engine,
        registry=deps.registry,
        calls=deps.store.calls if pooled else None,
    )
    bodies = [msgspec.json.encode(r.envelope) for r in events]
    assert [await runner.process(b) for b in bodies] == [Outcome.APPLIED] * len(events)
    assert [await runner.process(b) for b in bodies] == [Outcome.DUPLICATE] * len(events)
    assert seen == [r.envelope.position for r in events]
    async with deps.engine.connect() as conn:
        assert await conn.scalar(_TRACKED, {"c": spec.name}) == len(events)


async def test_reactions_in_flight_together_share_their_tracking_statements(deps: Deps) -> None:
    events = await make_history(deps, tenants=2, renames=3)
    seen: list[int] = []

    async def react(recorded: Recorded) -> None:
        seen.append(recorded.envelope.position)

    spec = ConsumerSpec(name="test.reaction.together", binding_keys=("#",), reaction=react)
    runner = ConsumerRunner(
        spec, engine=deps.engine, registry=deps.registry, calls=deps.store.calls
    )
    bodies = [msgspec.json.encode(r.envelope) for r in events]
    applied = await asyncio.gather(*(runner.process(b) for b in bodies))
    assert applied == [Outcome.APPLIED] * len(events)
    again = await asyncio.gather(*(runner.process(b) for b in bodies))
    assert again == [Outcome.DUPLICATE] * len(events)
    assert sorted(seen) == sorted(r.envelope.position for r in events)
    async with deps.engine.connect() as conn:
        assert await conn.scalar(_TRACKED, {"c": spec.name}) == len(events)
        # the rows of the reactions in flight together were written by one statement
        assert await conn.scalar(_TRANSACTIONS, {"c": spec.name}) == 1
