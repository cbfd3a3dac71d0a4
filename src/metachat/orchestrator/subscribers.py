"""The orchestrator's broker consumer: every customer message, answered by the reply policy."""

import dataclasses

from metachat.conversations.events import MessagePosted
from metachat.eventstore.consumer import ConsumerSpec
from metachat.eventstore.envelope import Recorded
from metachat.orchestrator.replies import OrchestratorDeps, ReplyPolicy


def is_customer_message(recorded: Recorded) -> bool:
    """Only a customer's message is answered; the rest (the replies themselves) are let pass."""
    event = recorded.event
    return isinstance(event, MessagePosted) and event.sender == "customer"


async def _unbound(_: Recorded) -> None:
    raise RuntimeError("the reply consumer runs only bound: use reply_consumer(deps)")


REPLY_CONSUMER = ConsumerSpec(
    name="orchestrator.replies",
    binding_keys=("*.conversations.message_posted",),
    reaction=_unbound,
    # The binding also brings the assistant's and the agents' messages: acknowledged with no
    # tracking check or row, since nothing is done for them.
    accepts=is_customer_message,
    # It calls models (which costs money) and replies to customers: replaying history must not
    # answer old messages again, so it starts at its mark (R13).
    side_effects=True,
    # A reply spends its time waiting (the burst window, the model), not computing: with the
    # process's default prefetch (32) and a 1.5 s window, a process could answer only about
    # 20 messages a second. Its database work is a few short transactions per reply.
    prefetch=128,
)
"""Declared by the relay with every consumer; run bound to its dependencies."""


def reply_consumer(deps: OrchestratorDeps) -> ConsumerSpec:
    """The reply consumer, bound to the process's dependencies."""
    return dataclasses.replace(REPLY_CONSUMER, reaction=ReplyPolicy(deps))
