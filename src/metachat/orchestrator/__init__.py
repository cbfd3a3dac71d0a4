"""Orchestrator: the assistant's reply to each customer message, or its hand-off to a human.

Owns: the reply pipeline (context, retrieval, prompt, LLM call, tool calls, confidence,
decision) and the confidence analyzer (`confidence`).
Publishes: `orchestrator.model_called`, `orchestrator.tool_called`, `orchestrator.reply_failed`
(what each reply cost); its replies, review requests and hand-offs are conversation commands.
Consumes: `conversations.message_posted` (customer messages), as the `orchestrator.replies`
consumer.
"""

from metachat.orchestrator.replies import OrchestratorDeps
from metachat.orchestrator.subscribers import REPLY_CONSUMER, reply_consumer

__all__ = ["REPLY_CONSUMER", "OrchestratorDeps", "reply_consumer"]
