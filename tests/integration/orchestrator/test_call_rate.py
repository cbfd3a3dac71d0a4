"""The tenant's call rate in a reply: a short wait is waited, a long one hands off with the reason.

Two customers write at once to a tenant allowed one model call a minute: the second reply's call
is due a minute after the first. The limiter's clock and sleep are fakes, so nothing really
waits; the rest (PostgreSQL, RabbitMQ, the reply consumer, `Models.check`) is real.
"""

import uuid

import msgspec

from metachat.conversations.events import ConversationHandedOff
from metachat.llm import CallRateLimiter
from metachat.orchestrator.events import ReplyFailed
from metachat.orchestrator.models import Models
from tests.integration.orchestrator.support import SNIPPET, World
from tests.unit.llm.fakes import FakeClock, RecordingSleep
from tests.waiting import eventually

QUESTION = "When is the shop open on Saturday?"


def _limit(world: World, *, max_wait: float) -> RecordingSleep:
    """Give the reply a limiter on a fake clock, waiting at most `max_wait` seconds."""
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    real = world.orchestrator.models
    models = Models(
        world.deps.engine,
        gateway=real.gateway,
        prices=real.prices,
        limiter=CallRateLimiter(clock=clock, sleep=sleep, max_wait=max_wait),
    )
    world.use(knowledge=[SNIPPET])
    world.reply_deps = msgspec.structs.replace(world.reply_deps, check_limits=models.check)
    return sleep


async def _two_customers_at_once(world: World) -> list[uuid.UUID]:
    await world.configure(burst_window_ms=0, calls_per_minute=1)
    conversations = [await world.open(), await world.open()]
    async with world.running():
        for conversation in conversations:
            await world.publish(await world.say(conversation, QUESTION))

        async def both_replied() -> bool:
            return all([await world.replies(c) for c in conversations])

        await eventually(both_replied)
    return conversations


class TestCallRate:
    async def test_a_call_over_the_rate_waits_its_turn_and_the_assistant_answers(
        self, world: World
    ) -> None:
        sleep = _limit(world, max_wait=60.0)
        conversations = await _two_customers_at_once(world)
        assert sleep.waits == [60.0]  # the second call waited for the next token
        for conversation in conversations:
            (reply,) = await world.replies(conversation)
            assert "10 am to 2 pm" in reply.text
            assert reply.metadata["action"] in {"send", "send_with_disclaimer"}
            events = [r.event for r in await world.events(conversation)]
            assert not any(isinstance(e, ConversationHandedOff) for e in events)

    async def test_a_wait_past_the_bound_hands_off_with_the_reason(self, world: World) -> None:
        sleep = _limit(world, max_wait=30.0)
        conversations = await _two_customers_at_once(world)
        assert sleep.waits == []
        handed = []
        for conversation in conversations:
            last = [r.event for r in await world.events(conversation)][-1]
            if isinstance(last, ConversationHandedOff):
                handed.append((conversation, last))
        ((conversation, handoff),) = handed  # one answered, the other handed off
        assert handoff.reason == "assistant_unavailable"
        assert handoff.details["code"] == "llm_rate_limit_exceeded"
        assert handoff.details["errors"] == [
            (
                "more than 1 model calls a minute; the next call is due in 60.0s, "
                "longer than the 30s a call may wait"
            )
        ]
        (reply,) = await world.replies(conversation)
        (failure,) = [r.event for r in await world.usage(reply.message_id)]
        assert isinstance(failure, ReplyFailed)
        assert failure.reason == "llm_rate_limit_exceeded"
