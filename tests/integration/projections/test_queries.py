"""The tenant directory queries over the stable view, and how a page is dealt into rounds."""

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import MetaData

from metachat.bootstrap import Deps
from metachat.eventstore.envelope import Envelope, Recorded
from metachat.eventstore.projection import Projection, ProjectionRunner
from metachat.kernel.actors import Actor
from metachat.settings import ProjectorSettings
from metachat.tenants.events import TenantRenamed
from metachat.tenants.projections import TENANT_DIRECTORY
from metachat.tenants.queries import get_tenant_directory_entry, list_tenants
from tests.integration.projections.support import TenantWriter, a_key, caught_up, oracle
from tests.waiting import eventually


async def _project(deps: Deps) -> None:
    runner = ProjectionRunner(
        TENANT_DIRECTORY, store=deps.store, settings=ProjectorSettings(poll_interval=0.05)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await eventually(lambda: caught_up(deps.engine))
    stop.set()
    await task


class TestTenantDirectoryQueries:
    async def test_lists_in_pages_and_gets_one(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=25)
        await _project(deps)
        expected = await oracle(deps.engine)
        async with deps.engine.connect() as conn:
            pages, after = [], None
            while page := await list_tenants(conn, limit=10, after=after):
                pages.append(page)
                after = page[-1].tenant_id
            some = next(iter(expected))
            entry = await get_tenant_directory_entry(conn, tenant_id=some)
            missing = await get_tenant_directory_entry(conn, tenant_id=uuid.uuid4())
        assert [len(p) for p in pages] == [10, 10, 5]
        ids = [e.tenant_id for p in pages for e in p]
        assert ids == sorted(expected)
        assert entry is not None
        assert (
            entry.name,
            entry.created_at,
            entry.updated_at,
            entry.active_keys,
            entry.last_position,
        ) == expected[some]
        assert missing is None


def _recording(calls: list[tuple[str, list[int]]], name: str) -> Any:
    async def handle(conn: object, records: Sequence[Recorded]) -> None:
        calls.append((name, [r.envelope.position for r in records]))

    return handle


def _recorded(position: int, stream: str, type_: str) -> Recorded:
    env = Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        schema_version=1,
        tenant_id=uuid.uuid4(),
        stream_id=stream,
        stream_version=1,
        position=position,
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        actor=Actor.system(),
        payload={},
    )
    return Recorded(envelope=env, event=a_key() if type_ == "k" else TenantRenamed(name="x"))


class TestRounds:
    async def test_keys_keep_their_order_and_types_are_batched(self) -> None:
        calls: list[tuple[str, list[int]]] = []
        projection = dataclasses.replace(
            TENANT_DIRECTORY, handlers={"a": _recording(calls, "a"), "k": _recording(calls, "k")}
        )
        page = [
            _recorded(1, "s1", "a"),
            _recorded(2, "s1", "k"),
            _recorded(3, "s2", "a"),
            _recorded(4, "s2", "k"),
            _recorded(5, "s1", "a"),
            _recorded(6, "s3", "ignored"),
            _recorded(7, "s3", "k"),
        ]
        handled = await projection.apply(None, page)  # type: ignore[arg-type]
        assert handled == 6
        assert calls == [("a", [1, 3]), ("k", [7]), ("k", [2, 4]), ("a", [5])]

    def test_rejects_names_that_are_not_plain_identifiers(self) -> None:
        with pytest.raises(ValueError, match="must match"):
            Projection(name="Bad-Name", metadata=MetaData(), handlers={}, views={})
        with pytest.raises(ValueError, match="unknown tables"):
            Projection(name="ok", metadata=MetaData(), handlers={}, views={"t": "tenants.t"})
        with pytest.raises(ValueError, match="view names"):
            dataclasses.replace(TENANT_DIRECTORY, views={"tenant_directory": "tenant_directory"})
