"""The policy `when_customer_message_posted_reply`: answer, or hand off, each customer message.

For each `conversations.message_posted` from a customer:

1. Wait out the tenant's burst window (counted from when the message was posted): messages this
   close together get one answer, given by the last one's turn.
2. Take the conversation's reply lock, then read it. Nothing to do when the humans have it, or
   when this message was answered already (a replay, a redelivery) or is not the newest
   unanswered one (a later message of the burst answers it). A message that arrived while a
   reply was being generated waits for the lock and is answered in turn.
3. Hand off at once on the tenant's keywords or when the customer asks for a person.
4. Retrieve context, build the prompt, stream the model's answer to the live listeners, run the
   tools it calls (bounded), assess the answer's confidence and decide.
5. Record each model and tool call (`orchestrator.*` events), then apply the decision through
   the conversations command `DeliverAssistantReply`, keyed per last message answered, so a
   second delivery of the same message never makes a second reply. If every model fails, the
   conversation goes to a human with the reasons: a customer is never left without an answer.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from metachat.conversations import (
    Context,
    ConversationDeps,
    History,
    IllegalTransitionError,
    MessageView,
    deliver_assistant_reply,
    load_history,
)
from metachat.conversations.commands import DeliverAssistantReply
from metachat.conversations.events import MessagePosted
from metachat.eventstore.envelope import Event, Recorded
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.llm.errors import LLMError
from metachat.llm.ports import CompletionRequest, ContextSnippet, LLMProvider
from metachat.orchestrator import confidence
from metachat.orchestrator.confidence.questions import mentions_keyword
from metachat.orchestrator.locks import ConversationLocks
from metachat.orchestrator.pipeline import Generation, LiveSink, generate
from metachat.orchestrator.prompt import build_messages
from metachat.orchestrator.tenant_tools import no_tools
from metachat.orchestrator.tools import ExternalTool, Retrieve, Toolbox
from metachat.orchestrator.usage import UsageRecorder
from metachat.tenants import LoadedAssistant
from metachat.tenants.commands import AssistantSettings, ConfidencePolicy

log = structlog.get_logger()
ACTOR = Actor.system("assistant")
"""Who the assistant's replies and hand-offs are recorded as."""

LiveOpener = Callable[..., Awaitable[LiveSink]]
"""Opens the live sink of one reply: `await live(tenant_id=, conversation_id=, reply_id=)`."""


class OrchestratorDeps(msgspec.Struct, frozen=True, kw_only=True):
    """What the reply policy needs; built by the worker from the process's dependencies."""

    conversations: ConversationDeps
    load_assistant: Callable[[uuid.UUID], Awaitable[LoadedAssistant]]
    """The tenant's assistant and name as of now (`AssistantCache.load` in a worker)."""
    locks: ConversationLocks
    provider_for: Callable[[LoadedAssistant], LLMProvider]
    check_limits: Callable[[Any, AssistantSettings, CompletionRequest], Awaitable[None]]
    """Raises an `LLMError` when the tenant's call rate or monthly budget refuses the call."""
    retrieve: Retrieve
    usage: UsageRecorder
    live: LiveOpener
    tools: Callable[[LoadedAssistant], AbstractAsyncContextManager[Sequence[ExternalTool]]] = (
        no_tools
    )
    """The tenant's own tools for one reply (HTTP tools, MCP servers), running while it does."""
    clock: Callable[[], datetime] = msgspec.field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def confidence_settings(policy: ConfidencePolicy) -> confidence.ConfidenceSettings:
    """The analyzer's settings from the tenant's policy."""
    settings = confidence.ConfidenceSettings(
        enabled=policy.enabled,
        mode=policy.mode,
        hand_off_threshold=policy.handoff_threshold,
        review_threshold=policy.review_threshold,
        add_disclaimers=policy.add_disclaimers,
        high_stakes_domains=policy.high_stakes_domains,
        handoff_keywords=policy.handoff_keywords,
    )
    if policy.disclaimer_text is None:
        return settings
    return msgspec.structs.replace(settings, disclaimer_text=policy.disclaimer_text)


def unanswered(history: History) -> list[MessageView]:
    """The customer's messages that no reply answered yet, oldest first.

    A reply of this policy names the messages it answered (`in_reply_to`), which is what counts:
    a message that arrived while the reply was generated comes before it in the stream and is
    still unanswered. Any other answer (a person's, or an assistant message posted through the
    API) answers everything before it.
    """
    pending: list[MessageView] = []
    answered: set[str] = set()
    for message in history.messages:
        if message.sender == "customer":
            pending.append(message)
        elif message.sender == "assistant" and "in_reply_to" in message.metadata:
            answered.update(str(m) for m in message.metadata["in_reply_to"])
        else:
            pending.clear()
    return [m for m in pending if str(m.message_id) not in answered]


class ReplyPolicy:
    """`when_customer_message_posted_reply`, bound to its dependencies."""

    def __init__(self, deps: OrchestratorDeps) -> None:
        self.deps = deps

    async def __call__(self, recorded: Recorded) -> None:
        """The consumer's reaction to one event (only customer messages concern it)."""
        event = recorded.event
        if not isinstance(event, MessagePosted) or event.sender != "customer":
            return
        tenant_id = recorded.envelope.tenant_id
        loaded = await self.deps.load_assistant(tenant_id)
        if not loaded.settings.enabled:
            return
        await self._wait_for_burst(recorded, loaded.settings)
        async with self.deps.locks.hold(event.conversation_id):
            await self._reply_if_due(recorded, event, loaded)

    async def _wait_for_burst(self, recorded: Recorded, settings: AssistantSettings) -> None:
        window = settings.burst_window_ms / 1000
        due = recorded.envelope.occurred_at.timestamp() + window
        delay = due - self.deps.clock().timestamp()
        if delay > 0:
            await self.deps.sleep(delay)

    async def _reply_if_due(
        self, recorded: Recorded, event: MessagePosted, loaded: LoadedAssistant
    ) -> None:
        env = recorded.envelope
        history = await load_history(self.deps.conversations, env.tenant_id, event.conversation_id)
        pending = unanswered(history)
        if not history.state.assistant_may_answer:
            log.info("reply_skipped", reason="with_the_humans", status=history.state.status)
            return
        if not pending or pending[-1].message_id != event.message_id:
            # Answered already, or a later message of the burst will answer it with the rest.
            known = any(m.message_id == event.message_id for m in pending)
            log.info("reply_skipped", reason="later_message_answers" if known else "answered")
            return
        ctx = Context(
            tenant_id=env.tenant_id,
            actor=ACTOR,
            correlation_id=env.correlation_id,
            causation_id=env.event_id,
        )
        await Reply(self.deps, ctx, history, pending, loaded).run()


class Reply:
    """One reply to the pending customer messages of one conversation."""

    def __init__(
        self,
        deps: OrchestratorDeps,
        ctx: Context,
        history: History,
        pending: Sequence[MessageView],
        loaded: LoadedAssistant,
    ) -> None:
        self.deps, self.ctx, self.history, self.loaded = deps, ctx, history, loaded
        self.pending = list(pending)
        self.settings = loaded.settings
        self.reply_id = uuid7()
        self.conversation_id = pending[-1].conversation_id
        self.question = "\n".join(m.text for m in pending)
        self.policy = confidence_settings(self.settings.confidence)
        self.cost: list[Event] = []
        """The usage events committed with the reply (`UsageRecorder`)."""

    async def run(self) -> None:
        """Answer, or hand off; apply the outcome as one conversation change."""
        if mentions_keyword(self.question, self.policy.handoff_keywords):
            await self._hand_off("handoff_keyword", {})
            return
        if confidence.customer_asks_for_human(self.question):
            await self._hand_off("customer_asked_for_human", {})
            return
        context = await self._context()
        try:
            generation, toolbox = await self._generate(context)
        except LLMError as exc:
            await self._failed(
                exc.code, [str(f) for f in getattr(exc, "failures", ())] or [str(exc)]
            )
            return
        except Exception as exc:
            # A fault of ours (a tool, the prompt) must not leave the customer unanswered
            # either: a person takes over, and the log has the whole story.
            log.exception("reply_generation_crashed")
            await self._failed("assistant_error", [f"{type(exc).__name__}: {exc}"])
            return
        self.cost = self.deps.usage.events(self.conversation_id, self.reply_id, generation)
        if toolbox.hand_off_requested is not None:
            await self._hand_off("model_requested", {"model_reason": toolbox.hand_off_requested})
            return
        decision = confidence.decide(
            self.question,
            generation.text,
            settings=self.policy,
            context=[snippet.text for snippet in context],
        )
        await self._deliver(decision, generation)

    async def _context(self) -> list[ContextSnippet]:
        if not self.settings.retrieval:
            return []
        return list(await self.deps.retrieve(self.question, 5))

    async def _generate(self, context: Sequence[ContextSnippet]) -> tuple[Generation, Toolbox]:
        async with contextlib.AsyncExitStack() as stack:
            external: Sequence[ExternalTool] = ()
            if self.settings.max_tool_rounds:
                external = await stack.enter_async_context(self.deps.tools(self.loaded))
            toolbox = Toolbox(facts=self._facts(), retrieve=self.deps.retrieve, external=external)
            return await self._generate_with(toolbox, context), toolbox

    async def _generate_with(
        self, toolbox: Toolbox, context: Sequence[ContextSnippet]
    ) -> Generation:
        messages = build_messages(
            self.settings,
            tenant_name=self.loaded.tenant_name,
            history=self.history.messages,
            answering=len(self.pending),
            context=context,
            confidence_instructions=confidence.instructions(self.policy.self_assessment_strategy),
        )
        await self.deps.check_limits(
            self.ctx.tenant_id, self.settings, CompletionRequest(messages=messages)
        )
        sink: LiveSink = await self.deps.live(
            tenant_id=self.ctx.tenant_id,
            conversation_id=self.conversation_id,
            reply_id=self.reply_id,
        )
        try:
            generation = await generate(
                self.deps.provider_for(self.loaded),
                messages,
                toolbox=toolbox if self.settings.max_tool_rounds else None,
                max_tool_rounds=self.settings.max_tool_rounds,
                context=context,
                sink=sink,
            )
        finally:
            await sink.close()
        return generation

    def _facts(self) -> dict[str, Any]:
        return {
            "channel": self.history.channel,
            "customer_id": self.history.customer_id,
            "status": self.history.state.status,
            "messages": len(self.history.messages),
            "started_at": self.history.messages[0].created_at.isoformat(),
        }

    async def _deliver(self, decision: confidence.Decision, generation: Generation) -> None:
        details = {
            "decision": msgspec.to_builtins(decision.assessment),
            "cutoffs": msgspec.to_builtins(decision.cutoffs),
            "models": [
                {"provider": c.provider, "model": c.model, "latency_ms": c.latency_ms}
                for c in generation.completions
            ],
            "tools": [r.call.name for r in generation.tool_results],
        }
        if decision.action == "hand_off":
            await self._hand_off(decision.reason, details)
            return
        await self._apply(decision.action, decision.reason, decision.text, details)

    async def _hand_off(self, reason: str, details: dict[str, Any]) -> None:
        await self._apply("hand_off", reason, self.settings.handoff_message, details)

    async def _failed(self, code: str, errors: list[str]) -> None:
        log.warning("reply_failed_handing_off", code=code, errors=errors)
        self.cost = self.deps.usage.failure(self.conversation_id, self.reply_id, code, errors)
        await self._hand_off("assistant_unavailable", {"code": code, "errors": errors})

    async def _apply(self, action: Any, reason: str, text: str, details: dict[str, Any]) -> None:
        reply = DeliverAssistantReply(
            message_id=self.reply_id,
            text=text,
            in_reply_to=tuple(m.message_id for m in self.pending),
            action=action,
            reason=reason,
            details=details,
        )
        try:
            appended = await deliver_assistant_reply(
                self.deps.conversations,
                self.ctx,
                self.conversation_id,
                reply,
                along=self.deps.usage.along(self.reply_id, self.cost),
            )
        except IllegalTransitionError as exc:
            # A person took the conversation while the answer was being generated: theirs now.
            log.info("reply_dropped", reason="with_the_humans", status=exc.extra.get("status"))
            return
        log.info("reply_delivered", action=action, reason=reason, events=len(appended))
