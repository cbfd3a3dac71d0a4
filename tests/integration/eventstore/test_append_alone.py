"""`append_alone`: the tenant, the append and what a refusal missed, in one statement.

Run on the API's store (the role bound by row-level security, connections from its call pool),
since that is where it matters: the tenant must be set inside the transaction, a conflict must
write nothing, and a failure must leave the pooled connection clean for the next use.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from psycopg import OperationalError
from psycopg import errors as pg_errors
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.conversations import model
from metachat.conversations.commands import OpenConversation, PostMessage
from metachat.eventstore.envelope import Event, Metadata
from metachat.eventstore.postgres import PostgresEventStore, StreamMovedError
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError, ValidationError
from metachat.kernel.ids import uuid7
from metachat.kernel.tenancy import tenant_scope
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import new_tenant

_COUNT = text("SELECT count(*) FROM eventstore.events WHERE stream_id = :s")
_OUTBOX = text(
    "SELECT count(*) FROM eventstore.outbox AS o JOIN eventstore.events AS e USING (position)"
    " WHERE e.stream_id = :s"
)


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    # One pooled connection: every test below reuses the connection a failure left behind.
    built = await build(make_settings(new_database()), pool_size=1)
    yield built
    await built.close()


def _opened(conversation_id: uuid.UUID) -> list[Event]:
    command = OpenConversation(
        conversation_id=conversation_id, channel="api", customer_id="c", metadata={}
    )
    return model.decide(model.ConversationState(), command)


def _post(text_: str = "hello") -> PostMessage:
    return PostMessage(message_id=uuid7(), sender="customer", text=text_, metadata={})


async def _count(deps: Deps, stream: str) -> tuple[int, int]:
    async with deps.engine.connect() as conn:
        events = int(await conn.scalar(_COUNT, {"s": stream}) or 0)
        outbox = int(await conn.scalar(_OUTBOX, {"s": stream}) or 0)
    return events, outbox


async def _opened_and_posted(deps: Deps, tenant_id: uuid.UUID) -> tuple[str, Metadata, list[Event]]:
    """A conversation of `tenant_id` opened and posted to: its stream, metadata, the post."""
    cid = uuid7()
    meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
    stream = model.stream_id(cid)
    posted = model.decide(model.replay(_opened(cid)), _post())
    with tenant_scope(tenant_id):
        await deps.scoped.store.append_alone(
            stream, _opened(cid), expected_version=0, metadata=meta
        )
        await deps.scoped.store.append_alone(stream, posted, expected_version=1, metadata=meta)
    return stream, meta, posted


class TestAppendAlone:
    async def test_appends_events_and_outbox_rows_as_the_tenant(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        cid = uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        with tenant_scope(tenant_id):
            recorded = await deps.scoped.store.append_alone(
                model.stream_id(cid), _opened(cid), expected_version=0, metadata=meta
            )
        assert [r.envelope.stream_version for r in recorded] == [1]
        assert recorded[0].envelope.position > 0
        assert await _count(deps, model.stream_id(cid)) == (1, 1)

    async def test_without_the_tenant_row_level_security_refuses_and_nothing_is_left(
        self, deps: Deps
    ) -> None:
        tenant_id = await new_tenant(deps)
        cid = uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        with pytest.raises(pg_errors.InsufficientPrivilege, match="row-level security"):
            await deps.scoped.store.append_alone(
                model.stream_id(cid), _opened(cid), expected_version=0, metadata=meta
            )
        assert await _count(deps, model.stream_id(cid)) == (0, 0)
        with tenant_scope(tenant_id):  # the same (only) pooled connection, clean again
            await deps.scoped.store.append_alone(
                model.stream_id(cid), _opened(cid), expected_version=0, metadata=meta
            )
        assert await _count(deps, model.stream_id(cid)) == (1, 1)

    async def test_a_stale_version_writes_nothing(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        stream, meta, posted = await _opened_and_posted(deps, tenant_id)
        with tenant_scope(tenant_id):
            for stale, missed in ((0, [1, 2]), (1, [2]), (5, [])):
                with pytest.raises(StreamMovedError) as moved:
                    await deps.scoped.store.append_alone(
                        stream, posted, expected_version=stale, metadata=meta
                    )
                # what the writer missed comes back with the refusal, in the same round trip
                assert [r.envelope.stream_version for r in moved.value.newer] == missed
            # and the connection is clean: the next append goes through
            await deps.scoped.store.append_alone(stream, posted, expected_version=2, metadata=meta)
        assert await _count(deps, stream) == (3, 3)

    async def test_racing_appends_after_one_version_let_exactly_one_win(
        self, new_database: Callable[[], str]
    ) -> None:
        deps = await build(make_settings(new_database()), pool_size=8)
        try:
            tenant_id = await new_tenant(deps)
            cid = uuid7()
            meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
            stream = model.stream_id(cid)
            state = model.replay(_opened(cid))
            with tenant_scope(tenant_id):
                await deps.scoped.store.append_alone(
                    stream, _opened(cid), expected_version=0, metadata=meta
                )
                outcomes = await asyncio.gather(
                    *(
                        deps.scoped.store.append_alone(
                            stream,
                            model.decide(state, _post(f"m{i}")),
                            expected_version=1,
                            metadata=meta,
                        )
                        for i in range(8)
                    ),
                    return_exceptions=True,
                )
            won = [o for o in outcomes if isinstance(o, list)]
            lost = [o for o in outcomes if isinstance(o, ConcurrencyError)]
            assert (len(won), len(lost)) == (1, 7), outcomes
            assert await _count(deps, stream) == (2, 2)
        finally:
            await deps.close()

    async def test_refuses_nul_before_writing(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        cid = uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        stream = model.stream_id(cid)
        with tenant_scope(tenant_id):
            await deps.scoped.store.append_alone(
                stream, _opened(cid), expected_version=0, metadata=meta
            )
            state = model.replay(_opened(cid))
            with pytest.raises(ValidationError):
                await deps.scoped.store.append_alone(
                    stream, model.decide(state, _post("a\x00b")), expected_version=1, metadata=meta
                )
            # a backslash followed by `u0000`, as typed, is text like any other
            posted = await deps.scoped.store.append_alone(
                stream, model.decide(state, _post("a\\u0000b")), expected_version=1, metadata=meta
            )
        assert posted[0].event.text == "a\\u0000b"  # type: ignore[attr-defined]


class TestReadStreamAfter:
    async def test_reads_what_follows_a_version_and_only_as_its_tenant(self, deps: Deps) -> None:
        tenant_id, other = await new_tenant(deps), await new_tenant(deps, "Other")
        stream, _, _ = await _opened_and_posted(deps, tenant_id)
        with tenant_scope(tenant_id):
            after = await deps.scoped.store.read_stream_after(stream, 1)
            assert [r.envelope.stream_version for r in after] == [2]
            assert await deps.scoped.store.read_stream_after(stream, 2) == []
        with tenant_scope(other):
            assert await deps.scoped.store.read_stream_after(stream, 0) == []
        assert await deps.scoped.store.read_stream_after(stream, 0) == []  # no tenant: nothing


class TestCallPool:
    async def test_a_connection_the_server_closed_fails_once_and_is_replaced(
        self, deps: Deps
    ) -> None:
        tenant_id = await new_tenant(deps)
        stream, meta, _ = await _opened_and_posted(deps, tenant_id)
        calls = deps.scoped.store.calls
        assert calls is not None
        async with calls.connection() as conn:  # the pool's only connection
            pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0]
        async with deps.engine.connect() as owner:
            await owner.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with tenant_scope(tenant_id):
            state = model.replay([r.event for r in await deps.store.read_stream(stream)])
            with pytest.raises(OperationalError):
                await deps.scoped.store.append_alone(
                    stream, model.decide(state, _post()), expected_version=2, metadata=meta
                )
            # the broken connection left the pool; a new one serves the retry
            await deps.scoped.store.append_alone(
                stream, model.decide(state, _post()), expected_version=2, metadata=meta
            )
        assert await _count(deps, stream) == (3, 3)

    async def test_a_store_without_one_uses_its_engine(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        store = PostgresEventStore(deps.scoped.engine, deps.registry)
        cid = uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        stream = model.stream_id(cid)
        with tenant_scope(tenant_id):
            await store.append_alone(stream, _opened(cid), expected_version=0, metadata=meta)
            with pytest.raises(StreamMovedError) as moved:
                await store.append_alone(stream, _opened(cid), expected_version=0, metadata=meta)
            assert [r.envelope.stream_version for r in moved.value.newer] == [1]
            assert [
                r.envelope.stream_version for r in await store.read_stream_after(stream, 0)
            ] == [1]
        assert await _count(deps, stream) == (1, 1)


class TestAppendTogether:
    async def test_all_or_nothing_in_one_transaction(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        stream, meta, posted = await _opened_and_posted(deps, tenant_id)
        other = model.stream_id(uuid7())
        with tenant_scope(tenant_id):
            # the conversation's append is stale: the new stream is not written either
            with pytest.raises(ConcurrencyError):
                await deps.scoped.store.append_together(
                    [(other, _opened(uuid7()), 0), (stream, posted, 1)], metadata=meta
                )
            assert await _count(deps, other) == (0, 0)
            placed = await deps.scoped.store.append_together(
                [(other, _opened(uuid7()), 0), (stream, [], 9), (stream, posted, 2)],
                metadata=meta,
            )
        assert [[r.envelope.stream_version for r in each] for each in placed] == [[1], [], [3]]
        assert placed[0][0].envelope.position < placed[2][0].envelope.position
        assert await _count(deps, other) == (1, 1)
        assert await _count(deps, stream) == (3, 3)

    async def test_the_appends_share_one_transaction(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        first, second = uuid7(), uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        streams = [model.stream_id(first), model.stream_id(second)]
        with tenant_scope(tenant_id):
            await deps.scoped.store.append_together(
                [(streams[0], _opened(first), 0), (streams[1], _opened(second), 0)],
                metadata=meta,
            )
        async with deps.engine.connect() as conn:
            transactions = await conn.scalar(
                text(
                    "SELECT count(DISTINCT tx_id::text) FROM eventstore.events"
                    " WHERE stream_id = ANY(:s)"
                ),
                {"s": streams},
            )
        assert transactions == 1

    async def test_without_the_tenant_nothing_is_written(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        cid = uuid7()
        meta = Metadata(tenant_id=tenant_id, actor=Actor.system("t"), correlation_id=uuid7())
        with pytest.raises(pg_errors.InsufficientPrivilege):
            await deps.scoped.store.append_together(
                [(model.stream_id(cid), _opened(cid), 0)], metadata=meta
            )
        assert await _count(deps, model.stream_id(cid)) == (0, 0)
