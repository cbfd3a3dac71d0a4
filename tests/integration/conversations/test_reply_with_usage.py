"""A reply and what it cost (`along`): one transaction, or the cost alone when no reply lands."""

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.conversations import (
    Context,
    ConversationDeps,
    IllegalTransitionError,
    NewStream,
    deliver_assistant_reply,
)
from metachat.conversations.cache import StreamCache
from metachat.conversations.commands import DeliverAssistantReply
from metachat.conversations.handlers import hand_off, open_conversation, post_message
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.orchestrator.events import ModelCalled
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import new_tenant

_EVENTS = text(
    "SELECT stream_id, type, tx_id::text AS tx FROM eventstore.events"
    " WHERE stream_id IN (:conversation, :reply) ORDER BY position"
)


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


def _cost(conversation_id: uuid.UUID, reply_id: uuid.UUID) -> NewStream:
    called = ModelCalled(
        conversation_id=conversation_id,
        reply_id=reply_id,
        round=0,
        provider="offline",
        model="offline",
        input_tokens=10,
        output_tokens=5,
        cost_micro_usd=0,
        priced=True,
        latency_ms=0,
        finish_reason="stop",
    )
    return NewStream(stream_id=f"reply-{reply_id}", events=[called])


def _reply(reply_id: uuid.UUID, answered: uuid.UUID) -> DeliverAssistantReply:
    return DeliverAssistantReply(
        message_id=reply_id, text="an answer", in_reply_to=(answered,), action="send", reason="ok"
    )


class Setup:
    def __init__(self, deps: Deps, tenant_id: uuid.UUID, *, cached: bool) -> None:
        self.deps = deps
        self.side = ConversationDeps(store=deps.store, cache=StreamCache() if cached else None)
        self.ctx = Context(tenant_id=tenant_id, actor=Actor.system("test"), correlation_id=uuid7())

    async def asked(self) -> tuple[uuid.UUID, uuid.UUID]:
        """A conversation with one customer message: (its id, the message's id)."""
        view = await open_conversation(self.side, self.ctx, channel="api", customer_id="c")
        posted = await post_message(
            self.side, self.ctx, view.conversation_id, sender="customer", text="hello?"
        )
        return view.conversation_id, posted.message.message_id

    async def events(
        self, conversation_id: uuid.UUID, reply_id: uuid.UUID
    ) -> list[tuple[str, str, str]]:
        async with self.deps.engine.connect() as conn:
            rows = await conn.execute(
                _EVENTS,
                {"conversation": f"conversation-{conversation_id}", "reply": f"reply-{reply_id}"},
            )
            return [(r.stream_id.split("-")[0], r.type, r.tx) for r in rows]


async def _setup(deps: Deps, *, cached: bool = True) -> Setup:
    return Setup(deps, await new_tenant(deps), cached=cached)


class TestReplyWithItsCost:
    @pytest.mark.parametrize("cached", [True, False], ids=["from the cache", "read first"])
    async def test_both_commit_in_one_transaction_cost_first(
        self, deps: Deps, cached: bool
    ) -> None:
        setup = await _setup(deps, cached=cached)
        cid, asked = await setup.asked()
        reply_id = uuid7()
        appended = await deliver_assistant_reply(
            setup.side, setup.ctx, cid, _reply(reply_id, asked), along=_cost(cid, reply_id)
        )
        assert [r.envelope.type for r in appended] == ["conversations.message_posted"]
        events = await setup.events(cid, reply_id)
        after_question = events[2:]
        assert [(stream, kind) for stream, kind, _ in after_question] == [
            ("reply", "orchestrator.model_called"),
            ("conversation", "conversations.message_posted"),
        ]
        assert len({tx for _, _, tx in after_question}) == 1

    async def test_a_stale_cache_retries_both_and_records_the_cost_once(self, deps: Deps) -> None:
        setup = await _setup(deps)
        cid, asked = await setup.asked()
        # Another process posts meanwhile: this side's remembered stream is one behind.
        other = ConversationDeps(store=deps.store, cache=StreamCache())
        await post_message(other, setup.ctx, cid, sender="agent", text="one moment", author_id="a")
        reply_id = uuid7()
        await deliver_assistant_reply(
            setup.side, setup.ctx, cid, _reply(reply_id, asked), along=_cost(cid, reply_id)
        )
        events = await setup.events(cid, reply_id)
        kinds = [kind for _, kind, _ in events]
        assert kinds.count("orchestrator.model_called") == 1
        assert kinds[-2:] == ["orchestrator.model_called", "conversations.message_posted"]
        assert events[-2][2] == events[-1][2]  # the retry's one transaction, not the first try

    async def test_a_refused_reply_still_records_what_it_cost(self, deps: Deps) -> None:
        setup = await _setup(deps)
        cid, asked = await setup.asked()
        await hand_off(setup.side, setup.ctx, cid, reason="the customer is a VIP")
        reply_id = uuid7()
        with pytest.raises(IllegalTransitionError):
            await deliver_assistant_reply(
                setup.side, setup.ctx, cid, _reply(reply_id, asked), along=_cost(cid, reply_id)
            )
        events = await setup.events(cid, reply_id)
        assert events[-1][:2] == ("reply", "orchestrator.model_called")

    async def test_a_reply_that_appends_nothing_records_its_cost_alone(self, deps: Deps) -> None:
        setup = await _setup(deps)
        cid, asked = await setup.asked()
        first = uuid7()
        await deliver_assistant_reply(
            setup.side, setup.ctx, cid, _reply(first, asked), along=_cost(cid, first)
        )
        again = uuid7()  # the same message answered again (a redelivery): no second reply
        appended = await deliver_assistant_reply(
            setup.side, setup.ctx, cid, _reply(again, asked), along=_cost(cid, again)
        )
        assert appended == []
        events = await setup.events(cid, again)
        assert [kind for stream, kind, _ in events if stream == "reply"] == [
            "orchestrator.model_called"
        ]
