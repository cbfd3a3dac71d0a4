"""The per-process assistant cache: served from memory until one of its streams moves."""

from typing import Any

from metachat.conversations import ConversationDeps, load_history
from metachat.conversations.cache import StreamCache
from metachat.conversations.events import ConversationHandedOff
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.commands import RegisterMcpServer
from metachat.tenants.handlers import rename_tenant
from metachat.tenants.mcp import register_server
from tests.integration.orchestrator.support import SNIPPET, World
from tests.waiting import eventually


class TestAssistantCache:
    async def test_loaded_once_until_a_setting_the_name_or_the_mcp_registry_changes(
        self, world: World
    ) -> None:
        cache = world.orchestrator.assistants
        first = await cache.load(world.tenant_id)
        assert first.tenant_name == "Acme Bikes"
        assert await cache.load(world.tenant_id) is first
        assert cache.loads == 1

        await world.configure(burst_window_ms=0, tone="terse")
        changed = await cache.load(world.tenant_id)
        assert changed.settings.tone == "terse"
        assert cache.loads == 2

        await rename_tenant(
            world.tenant_id,
            "Acme Cycles",
            deps=world.deps.tenants,
            actor=Actor.operator(),
            correlation_id=uuid7(),
        )
        assert (await cache.load(world.tenant_id)).tenant_name == "Acme Cycles"
        assert cache.loads == 3

        await register_server(
            world.deps.store,
            RegisterMcpServer(name="files", command="/bin/true"),
            actor=Actor.operator(),
            correlation_id=uuid7(),
        )
        await cache.load(world.tenant_id)
        assert cache.loads == 4
        await cache.load(world.tenant_id)
        assert cache.loads == 4

    async def test_a_settings_change_applies_to_the_next_message(self, world: World) -> None:
        world.use(knowledge=[SNIPPET])
        conversation = await world.open()
        async with world.running():
            await world.publish(await world.say(conversation, "When are you open on Saturday?"))
            await eventually(lambda: _replies(world, conversation, 1))
            await world.configure(burst_window_ms=0, confidence={"handoff_keywords": ["refund"]})
            await world.publish(await world.say(conversation, "I want a refund"))
            await eventually(lambda: _handed_off(world, conversation))


async def _replies(world: World, conversation: Any, count: int) -> bool:
    return len(await world.replies(conversation)) >= count


async def _handed_off(world: World, conversation: Any) -> bool:
    return any(isinstance(r.event, ConversationHandedOff) for r in await world.events(conversation))


class TestTheReplysReadSeedsTheStreamCache:
    async def test_load_history_remembers_the_stream_it_read(self, world: World) -> None:
        deps = ConversationDeps(store=world.deps.store, cache=StreamCache())
        conversation = await world.open()
        await world.say(conversation, "When are you open?")
        history = await load_history(deps, world.tenant_id, conversation)
        assert deps.cache is not None
        cached = deps.cache.get(world.tenant_id, conversation)
        assert cached is not None
        assert len(cached.history) == history.version
        assert cached.state == history.state
