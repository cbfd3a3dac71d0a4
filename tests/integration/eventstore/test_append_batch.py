"""Appends that arrive together go in one call (`eventstore.append_batch`), each its own append.

Run on the API's store (the role bound by row-level security). Appends started in the same
event-loop turn are all waiting when the batch is taken, so they share one transaction: the
events' `tx_id` shows it.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import pytest_asyncio
from psycopg import errors as pg_errors
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.conversations import model
from metachat.conversations.commands import OpenConversation, PostMessage
from metachat.eventstore.envelope import Event, Metadata, Recorded
from metachat.eventstore.postgres import StreamMovedError
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.kernel.tenancy import tenant_scope
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import new_tenant

_TX_IDS = text(
    "SELECT DISTINCT tx_id::text FROM eventstore.events"
    " WHERE stream_id = ANY(:streams) AND stream_version > 1"
)
_ROWS = text(
    "SELECT e.stream_id, e.tenant_id, count(o.position) AS outboxed FROM eventstore.events AS e"
    " LEFT JOIN eventstore.outbox AS o USING (position)"
    " WHERE e.stream_id = ANY(:streams) AND e.stream_version > 1 GROUP BY 1, 2"
)


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=1)
    yield built
    await built.close()


class Conversation:
    """An opened conversation of a tenant, and a post to append after version 1."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        self.id = uuid7()
        self.stream = model.stream_id(self.id)
        self.meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        command = OpenConversation(
            conversation_id=self.id, channel="api", customer_id="c", metadata={}
        )
        self.opened = model.decide(model.ConversationState(), command)

    def post(self, text_: str = "hello") -> list[Event]:
        command = PostMessage(message_id=uuid7(), sender="customer", text=text_, metadata={})
        return model.decide(model.replay(self.opened), command)


async def _opened(deps: Deps, tenant_id: uuid.UUID, count: int) -> list[Conversation]:
    conversations = [Conversation(tenant_id) for _ in range(count)]
    with tenant_scope(tenant_id):
        for c in conversations:
            await deps.scoped.store.append_alone(
                c.stream, c.opened, expected_version=0, metadata=c.meta
            )
    return conversations


def _append(
    deps: Deps,
    c: Conversation,
    *,
    scope: uuid.UUID | None,
    meta: Metadata | None = None,
    version: int = 1,
) -> "asyncio.Task[list[Recorded]]":
    """Start an append as a task of its own, acting for `scope` (None: no tenant)."""

    def start() -> Coroutine[Any, Any, list[Recorded]]:
        return deps.scoped.store.append_alone(
            c.stream, c.post(), expected_version=version, metadata=meta or c.meta
        )

    if scope is None:
        return asyncio.create_task(start())
    with tenant_scope(scope):  # the task copies the context, tenant included, when created
        return asyncio.create_task(start())


async def _together(tasks: Sequence["asyncio.Task[list[Recorded]]"]) -> list[Any]:
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def _transactions(deps: Deps, streams: list[str]) -> set[str]:
    async with deps.engine.connect() as conn:
        return set((await conn.execute(_TX_IDS, {"streams": streams})).scalars())


async def _written(deps: Deps, streams: list[str]) -> dict[str, tuple[uuid.UUID, int]]:
    async with deps.engine.connect() as conn:
        rows = (await conn.execute(_ROWS, {"streams": streams})).all()
    return {row.stream_id: (row.tenant_id, row.outboxed) for row in rows}


class TestAppendBatch:
    async def test_appends_arriving_together_commit_in_one_transaction(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        conversations = await _opened(deps, tenant_id, 10)
        outcomes = await _together([_append(deps, c, scope=tenant_id) for c in conversations])
        for c, recorded in zip(conversations, outcomes, strict=True):
            assert isinstance(recorded, list), recorded
            assert [(r.envelope.stream_id, r.envelope.stream_version) for r in recorded] == [
                (c.stream, 2)
            ]
            assert recorded[0].envelope.position > 0
        streams = [c.stream for c in conversations]
        assert len(await _transactions(deps, streams)) == 1
        assert await _written(deps, streams) == dict.fromkeys(streams, (tenant_id, 1))

    async def test_each_tenant_s_entry_is_bound_to_its_own_tenant(self, deps: Deps) -> None:
        a, b = await new_tenant(deps), await new_tenant(deps, "Other")
        (ca,), (cb,) = await _opened(deps, a, 1), await _opened(deps, b, 1)
        outcomes = await _together([_append(deps, ca, scope=a), _append(deps, cb, scope=b)])
        assert all(isinstance(o, list) for o in outcomes), outcomes
        assert len(await _transactions(deps, [ca.stream, cb.stream])) == 1
        assert await _written(deps, [ca.stream, cb.stream]) == {
            ca.stream: (a, 1),
            cb.stream: (b, 1),
        }

    async def test_a_refused_entry_fails_alone_and_the_others_are_appended(
        self, deps: Deps
    ) -> None:
        a, b = await new_tenant(deps), await new_tenant(deps, "Other")
        (ca, forged), (cb,) = await _opened(deps, a, 2), await _opened(deps, b, 1)
        # Acting for tenant A, an append that claims tenant B's id: row-level security refuses
        # it, which fails the whole batch; each entry then runs on its own.
        outcomes = await _together(
            [
                _append(deps, ca, scope=a),
                _append(deps, forged, scope=a, meta=cb.meta),
                _append(deps, cb, scope=b),
            ]
        )
        assert isinstance(outcomes[0], list)
        assert isinstance(outcomes[1], pg_errors.InsufficientPrivilege)
        assert isinstance(outcomes[2], list)
        assert await _written(deps, [ca.stream, forged.stream, cb.stream]) == {
            ca.stream: (a, 1),
            cb.stream: (b, 1),
        }

    async def test_an_entry_without_a_tenant_does_not_act_for_the_one_before_it(
        self, deps: Deps
    ) -> None:
        a = await new_tenant(deps)
        first, second = await _opened(deps, a, 2)
        outcomes = await _together(
            [_append(deps, first, scope=a), _append(deps, second, scope=None)]
        )
        assert isinstance(outcomes[0], list)
        # Acting for no tenant, it sees none of the stream (row-level security), as alone.
        assert isinstance(outcomes[1], StreamMovedError)
        assert outcomes[1].newer == []
        assert set(await _written(deps, [first.stream, second.stream])) == {first.stream}

    async def test_a_stale_entry_writes_nothing_and_learns_what_it_missed(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        same, other = await _opened(deps, tenant_id, 2)
        outcomes = await _together(
            [
                _append(deps, same, scope=tenant_id),
                _append(deps, same, scope=tenant_id),  # decided from the same version
                _append(deps, other, scope=tenant_id),
            ]
        )
        won, lost, beside = outcomes
        assert isinstance(won, list)
        assert isinstance(beside, list)
        assert isinstance(lost, StreamMovedError)
        # the winner's event, committed in the same transaction, is what the loser missed
        assert [r.envelope.event_id for r in lost.newer] == [won[0].envelope.event_id]
        assert len(await _transactions(deps, [same.stream, other.stream])) == 1

    async def test_an_append_arriving_alone_is_not_delayed_into_a_batch(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        conversations = await _opened(deps, tenant_id, 3)
        for c in conversations:
            (recorded,) = await _together([_append(deps, c, scope=tenant_id)])
            assert isinstance(recorded, list), recorded
        assert len(await _transactions(deps, [c.stream for c in conversations])) == 3
