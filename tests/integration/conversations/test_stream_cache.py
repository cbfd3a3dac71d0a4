"""The stream cache: two processes writing one conversation, each with its own stale memory."""

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from metachat.bootstrap import Deps, build
from metachat.conversations import Context, ConversationDeps, load_history
from metachat.conversations.cache import StreamCache
from metachat.conversations.handlers import (
    close,
    hand_off,
    open_conversation,
    post_message,
    reopen,
    return_to_assistant,
)
from metachat.kernel.actors import Actor
from metachat.kernel.errors import NotFoundError
from metachat.kernel.ids import uuid7
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import new_tenant


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


class Two:
    """Process A and process B: one store, a cache each."""

    def __init__(self, deps: Deps, tenant_id: uuid.UUID) -> None:
        self.a = ConversationDeps(store=deps.store, cache=StreamCache())
        self.b = ConversationDeps(store=deps.store, cache=StreamCache())
        self.ctx = Context(tenant_id=tenant_id, actor=Actor.system("test"), correlation_id=uuid7())


async def _two(deps: Deps) -> tuple[Two, uuid.UUID]:
    two = Two(deps, await new_tenant(deps))
    view = await open_conversation(two.a, two.ctx, channel="api", customer_id="c")
    return two, view.conversation_id


class TestStaleMemory:
    async def test_an_append_from_a_stale_stream_is_retried_on_a_fresh_read(
        self, deps: Deps
    ) -> None:
        two, cid = await _two(deps)
        for side in (two.a, two.b, two.a, two.b, two.a):
            await post_message(side, two.ctx, cid, sender="customer", text="hello")
        history = await load_history(two.a, two.ctx.tenant_id, cid)
        assert len(history.messages) == 5
        assert history.version == 6

    async def test_a_stale_side_reads_only_what_it_missed(
        self, deps: Deps, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        two, cid = await _two(deps)
        await post_message(two.b, two.ctx, cid, sender="customer", text="b knows it now")
        full_reads: list[str] = []
        real = deps.store.read_stream

        async def counting(stream_id: str, **kw: object) -> object:
            full_reads.append(stream_id)
            return await real(stream_id, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(deps.store, "read_stream", counting)
        for side in (two.a, two.b) * 4:  # each post finds the other side wrote last
            posted = await post_message(side, two.ctx, cid, sender="customer", text="turn")
            assert posted.created
        assert full_reads == []  # caught up from the remembered version, never from the start
        monkeypatch.undo()
        history = await load_history(two.a, two.ctx.tenant_id, cid)
        assert [m.text for m in history.messages] == ["b knows it now", *["turn"] * 8]
        assert history.version == 10

    async def test_a_no_op_from_a_stale_state_is_checked_on_a_fresh_read(self, deps: Deps) -> None:
        two, cid = await _two(deps)
        await hand_off(two.a, two.ctx, cid, reason="first")  # A remembers: handed off
        await return_to_assistant(two.b, two.ctx, cid)  # B gives it back
        view = await hand_off(two.a, two.ctx, cid, reason="again")  # A's memory says no-op
        assert view.handed_off
        assert view.version == 4  # the second hand-off was appended

    async def test_a_refusal_from_a_stale_state_is_checked_on_a_fresh_read(
        self, deps: Deps
    ) -> None:
        two, cid = await _two(deps)
        await close(two.a, two.ctx, cid)  # A remembers: closed
        await reopen(two.b, two.ctx, cid)
        posted = await post_message(two.a, two.ctx, cid, sender="customer", text="still there?")
        assert posted.created

    async def test_another_tenant_never_reads_a_cached_stream(self, deps: Deps) -> None:
        two, cid = await _two(deps)
        await post_message(two.a, two.ctx, cid, sender="customer", text="mine")
        stranger = Context(
            tenant_id=await new_tenant(deps, "Other"),
            actor=Actor.system("x"),
            correlation_id=uuid7(),
        )
        with pytest.raises(NotFoundError):
            await post_message(two.a, stranger, cid, sender="customer", text="theirs")
