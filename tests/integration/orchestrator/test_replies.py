"""The reply policy end to end: real PostgreSQL and RabbitMQ, the offline model, no network."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from metachat.conversations.events import (
    ConversationHandedOff,
    ConversationReviewRequested,
    MessagePosted,
)
from metachat.llm.errors import LLMUnavailableError, ProviderFailure
from metachat.llm.offline import OfflineProvider
from metachat.llm.ports import CompletionRequest, StreamItem
from metachat.orchestrator.events import ModelCalled, ReplyFailed
from tests.integration.orchestrator.support import SNIPPET, World, live_deltas
from tests.waiting import eventually


async def _replied(world: World, conversation_id: Any, count: int = 1) -> bool:
    return len(await world.replies(conversation_id)) >= count


class _Failing(OfflineProvider):
    """Every model of the chain failed."""

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        del request
        failures = (
            ProviderFailure(provider="openai", code="llm_server_error", message="HTTP 503"),
            ProviderFailure(provider="anthropic", code="llm_timeout", message="no answer in 30s"),
        )
        raise LLMUnavailableError(failures, provider="chain")
        yield  # pragma: no cover - makes this an async generator


class _Gated(OfflineProvider):
    """Answers only once `gate` is set, to hold a reply in generation."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        self.calls += 1
        await self.gate.wait()
        async for item in super().stream(request):
            yield item


class TestAnswers:
    async def test_answers_from_the_knowledge_with_the_marker_stripped(self, world: World) -> None:
        world.use(knowledge=[SNIPPET])
        conversation = await world.open()
        async with live_deltas(world.deps) as pieces, world.running():
            posted = await world.say(conversation, "When is the shop open on Saturday?")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        (reply,) = await world.replies(conversation)
        assert "10 am to 2 pm" in reply.text
        assert "[confidence" not in reply.text.lower()
        assert reply.metadata["action"] in {"send", "send_with_disclaimer"}
        assert reply.metadata["in_reply_to"] == [_message_id(posted)]
        assert reply.metadata["details"]["decision"]["signals"]
        # Streamed to live listeners piece by piece before it was stored.
        streamed = "".join(p.text for p in pieces if p.reply_id == reply.message_id)
        assert "10 am to 2 pm" in streamed
        assert pieces[-1].done
        usage = [r.event for r in await world.usage(reply.message_id)]
        assert [type(e) for e in usage] == [ModelCalled]

    async def test_an_unsure_answer_is_sent_and_a_human_asked_to_review(self, world: World) -> None:
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "Can I return a bike bought abroad?")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        (reply,) = await world.replies(conversation)
        assert reply.metadata["action"] == "send_and_review"
        assert "Please note" in reply.text  # the disclaimer
        review = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(review, ConversationReviewRequested)
        assert review.message_id == reply.message_id
        assert review.details["decision"]["level"] in {"low", "very_low"}

    async def test_below_the_hand_off_bar_a_human_takes_over_in_the_tenants_words(
        self, world: World
    ) -> None:
        await world.configure(
            burst_window_ms=0,
            handoff_message="Un instant, un collègue arrive.",
            confidence={"mode": "strict"},
        )
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "Can I return a bike bought abroad?")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        (reply,) = await world.replies(conversation)
        assert reply.text == "Un instant, un collègue arrive."
        handed = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(handed, ConversationHandedOff)
        assert handed.reason == "low_confidence"
        assert handed.details["decision"]["score"] < handed.details["cutoffs"]["hand_off"]
        assert {s["name"] for s in handed.details["decision"]["signals"]} >= {"self_assessment"}


class TestHandOffAtOnce:
    async def test_a_customer_asking_for_a_person_gets_one_without_a_model_call(
        self, world: World
    ) -> None:
        world.use(provider=_Failing())  # proves no model is called
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "Please let me talk to a human.")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        handed = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(handed, ConversationHandedOff)
        assert handed.reason == "customer_asked_for_human"

    async def test_the_tenants_keywords_hand_off(self, world: World) -> None:
        await world.configure(burst_window_ms=0, confidence={"handoff_keywords": ["refund"]})
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "I want a refund for my order")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        handed = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(handed, ConversationHandedOff)
        assert handed.reason == "handoff_keyword"

    async def test_when_every_model_fails_a_human_takes_over_with_the_reasons(
        self, world: World
    ) -> None:
        world.use(provider=_Failing(), knowledge=[SNIPPET])
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "When is the shop open?")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
        (reply,) = await world.replies(conversation)
        handed = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(handed, ConversationHandedOff)
        assert handed.reason == "assistant_unavailable"
        assert "503" in handed.details["errors"][0]
        (failure,) = [r.event for r in await world.usage(reply.message_id)]
        assert isinstance(failure, ReplyFailed)


class TestOnceAndInTurn:
    async def test_a_replayed_message_never_gets_a_second_reply(self, world: World) -> None:
        world.use(knowledge=[SNIPPET])
        conversation = await world.open()
        async with world.running():
            posted = await world.say(conversation, "When is the shop open on Saturday?")
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
            await world.publish(posted)  # a redelivery (the tracking row stops it)
        async with world.harness.deps.engine.begin() as conn:  # forget it was ever handled
            from sqlalchemy import text

            await conn.execute(text("DELETE FROM eventstore.tracking"))
        async with world.running():
            await world.publish(posted)
            await asyncio.sleep(1.0)
        assert len(await world.replies(conversation)) == 1

    async def test_a_burst_gets_one_answer_to_all_of_it(self, world: World) -> None:
        await world.configure(burst_window_ms=1500)
        world.use(knowledge=[SNIPPET])
        conversation = await world.open()
        posted: list[Any] = []
        async with world.running():
            for text in ("Hello", "I have a question", "When are you open on Saturday?"):
                posted += await world.say(conversation, text)
            await world.publish(posted)
            await eventually(lambda: _replied(world, conversation))
            await asyncio.sleep(2.0)  # every message's window has passed
        (reply,) = await world.replies(conversation)
        assert len(reply.metadata["in_reply_to"]) == 3

    async def test_a_message_sent_while_a_reply_is_generated_is_answered_after_it(
        self, world: World
    ) -> None:
        gated = _Gated()
        world.use(provider=gated, knowledge=[SNIPPET])
        conversation = await world.open()
        async with world.running():
            first = await world.say(conversation, "When are you open on Saturday?")
            await world.publish(first)
            await eventually(lambda: _called(gated, 1))
            second = await world.say(conversation, "And on Monday?")
            await world.publish(second)
            await asyncio.sleep(0.3)
            assert gated.calls == 1  # the second waits for the first, not beside it
            gated.gate.set()
            await eventually(lambda: _replied(world, conversation, 2))
        first_reply, second_reply = await world.replies(conversation)
        assert first_reply.metadata["in_reply_to"] == [_message_id(first)]
        assert second_reply.metadata["in_reply_to"] == [_message_id(second)]


class TestWithTheHumans:
    async def test_no_ai_reply_once_handed_off(self, world: World) -> None:
        from metachat.conversations.handlers import hand_off

        world.use(knowledge=[SNIPPET])
        conversation = await world.open()
        await hand_off(world.conversations, world.ctx, conversation, reason="agent took it")
        async with world.running():
            posted = await world.say(conversation, "When are you open on Saturday?")
            await world.publish(posted)
            await asyncio.sleep(1.0)
        assert await world.replies(conversation) == []


async def _called(provider: _Gated, count: int) -> bool:
    return provider.calls >= count


def _message_id(posted: list[Any]) -> str:
    event = posted[-1].event
    assert isinstance(event, MessagePosted)
    return str(event.message_id)
