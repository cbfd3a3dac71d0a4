"""Helpers for the orchestrator tests: a tenant, conversations, the reply consumer running."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import psycopg

from metachat.bootstrap import Deps, build_orchestrator
from metachat.conversations import Context, ConversationDeps, load_history
from metachat.conversations.handlers import open_conversation, post_message
from metachat.conversations.live import LIVE_CHANNEL, LiveDelta, decode_delta
from metachat.database.engine import libpq_url
from metachat.eventstore.envelope import Recorded
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.llm.ports import ContextSnippet, LLMProvider
from metachat.orchestrator import OrchestratorDeps, reply_consumer
from metachat.orchestrator.usage import stream_id as reply_stream
from metachat.tenants import AssistantDeps
from metachat.tenants.assistant.handlers import configure_assistant
from metachat.tenants.commands import AssistantSettings
from metachat.tenants.handlers import create_tenant
from tests.integration.consumers.support import Harness

SNIPPET = ContextSnippet(
    number=1,
    text="Our shop is open Monday to Friday from 9 am to 6 pm, and Saturday from 10 am to 2 pm.",
    source="opening-hours.md",
)


class World:
    """One tenant with an assistant, its conversations, and the reply consumer's dependencies."""

    def __init__(self, harness: Harness, tenant_id: uuid.UUID, orchestrator: Any) -> None:
        self.harness = harness
        self.deps: Deps = harness.deps
        self.tenant_id = tenant_id
        self.orchestrator = orchestrator
        self.reply_deps: OrchestratorDeps = orchestrator.deps
        self.conversations = ConversationDeps(store=self.deps.store)
        self.ctx = Context(tenant_id=tenant_id, actor=Actor.system("test"), correlation_id=uuid7())

    def use(
        self,
        *,
        provider: LLMProvider | None = None,
        knowledge: Sequence[ContextSnippet] | None = None,
    ) -> None:
        """Swap the model chain or the knowledge for this test."""
        changes: dict[str, Any] = {}
        if provider is not None:
            changes["provider_for"] = lambda _: provider
        if knowledge is not None:
            found = list(knowledge)

            async def retrieve(query: str, top_k: int) -> list[ContextSnippet]:
                del query
                return found[:top_k]

            changes["retrieve"] = retrieve
        self.reply_deps = msgspec.structs.replace(self.reply_deps, **changes)

    async def configure(self, **settings: Any) -> None:
        await configure_assistant(
            self.tenant_id,
            msgspec.convert(settings, AssistantSettings),
            deps=AssistantDeps(store=self.deps.store, box=self.deps.secrets),
            actor=Actor.operator("test"),
            correlation_id=uuid7(),
        )

    async def open(self) -> uuid.UUID:
        view = await open_conversation(
            self.conversations, self.ctx, channel="api", customer_id="customer-1"
        )
        return view.conversation_id

    async def say(self, conversation_id: uuid.UUID, text: str) -> list[Recorded]:
        """Post a customer message; return its events (to publish as the relay would)."""
        before = len(await self.deps.store.read_stream(_stream(conversation_id)))
        await post_message(
            self.conversations, self.ctx, conversation_id, sender="customer", text=text
        )
        return (await self.deps.store.read_stream(_stream(conversation_id)))[before:]

    async def publish(self, recorded: Sequence[Recorded]) -> None:
        await self.harness.publish(r.envelope for r in recorded)

    async def events(self, conversation_id: uuid.UUID) -> list[Recorded]:
        return await self.deps.store.read_stream(_stream(conversation_id))

    async def replies(self, conversation_id: uuid.UUID) -> list[Any]:
        history = await load_history(self.conversations, self.tenant_id, conversation_id)
        return [m for m in history.messages if m.sender == "assistant"]

    async def usage(self, reply_id: uuid.UUID) -> list[Recorded]:
        return await self.deps.store.read_stream(reply_stream(reply_id))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.harness.running([reply_consumer(self.reply_deps)]):
            yield


def _stream(conversation_id: uuid.UUID) -> str:
    return f"conversation-{conversation_id}"


async def a_world(harness: Harness, **settings: Any) -> World:
    issued = await create_tenant(
        "Acme Bikes", deps=harness.deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
    )
    world = World(harness, issued.tenant_id, build_orchestrator(harness.deps))
    await world.configure(**{"burst_window_ms": 0, **settings})
    return world


@contextlib.asynccontextmanager
async def live_deltas(deps: Deps) -> AsyncIterator[list[LiveDelta]]:
    """Collect every live reply piece notified while the block runs."""
    seen: list[LiveDelta] = []
    conn = await psycopg.AsyncConnection.connect(libpq_url(deps.database_url), autocommit=True)
    await conn.execute(f"LISTEN {LIVE_CHANNEL}")

    async def listen() -> None:
        async for notification in conn.notifies():
            delta = decode_delta(notification.payload)
            seen.extend([delta] if delta is not None else [])

    task = asyncio.create_task(listen())
    try:
        yield seen
    finally:
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


Check = Callable[[], Any]
