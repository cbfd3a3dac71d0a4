"""R2 across processes: the position a projection waits for is stored and exported."""

from metachat.bootstrap import Deps
from metachat.eventstore.envelope import Metadata
from metachat.eventstore.projection import projection_status
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants import handlers, model
from metachat.tenants.events import TenantRenamed
from tests.integration.projections.support import head, live_runner
from tests.waiting import eventually


async def _status(deps: Deps):
    [status] = [s for s in await projection_status(deps.engine) if s.name == "tenant_directory"]
    return status


async def test_a_live_gap_is_exported_and_released_when_its_transaction_rolls_back(
    deps: Deps,
) -> None:
    first = await handlers.create_tenant(
        "First", deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
    )
    async with live_runner(deps.store):
        async with deps.engine.connect() as slow:
            await slow.begin()
            meta = Metadata(
                tenant_id=first.tenant_id, actor=Actor.operator(), correlation_id=uuid7()
            )
            [reserved] = await deps.store.append(
                model.stream_id(first.tenant_id),
                [TenantRenamed(name="Slow")],
                expected_version=2,
                metadata=meta,
                conn=slow,
            )
            await handlers.create_tenant(
                "Second", deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
            )

            async def held() -> bool:
                return (await _status(deps)).held_at == reserved.envelope.position

            await eventually(held)
            assert (await _status(deps)).position < reserved.envelope.position
            await slow.rollback()

        async def released() -> bool:
            status = await _status(deps)
            return status.held_at is None and status.position == await head(deps.engine)

        await eventually(released)
