"""The conversation read models, built from legal histories appended through the store."""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.conversations.commands import (
    AssignConversation,
    CloseConversation,
    HandOffConversation,
    ReopenConversation,
    ResolveConversation,
    ReturnToAssistant,
)
from metachat.conversations.projections import CONVERSATION_LIST, CONVERSATION_MESSAGES
from metachat.eventstore.projection import load_checkpoint, rebuild
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import (
    Conversations,
    new_tenant,
    project,
)

Row = dict[str, Any]


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


async def _rows(deps: Deps, view: str, order: str) -> list[Row]:
    async with deps.engine.connect() as conn:
        result = await conn.execute(text(f"SELECT * FROM {view} ORDER BY {order}"))
        return [dict(row._mapping) for row in result]


async def _summary(deps: Deps, conversation_id: uuid.UUID) -> Row:
    (row,) = [
        r
        for r in await _rows(deps, "conversations.conversation_list", "conversation_id")
        if r["conversation_id"] == conversation_id
    ]
    return row


def _flags(row: Row) -> tuple[str, bool, str | None, bool]:
    return row["status"], row["handed_off"], row["assignee"], row["needs_human_attention"]


class TestConversationList:
    async def test_follows_the_handoff_and_attention_rules(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        conversations = Conversations(deps)
        cid = await conversations.open(tenant_id, channel="whatsapp", customer="+33600000000")
        steps: list[tuple[Any, tuple[str, bool, str | None, bool]]] = [
            ("customer", ("open", False, None, False)),
            (HandOffConversation(reason="asked for a human"), ("assigned_human", True, None, True)),
            ("customer", ("assigned_human", True, None, True)),
            (AssignConversation(agent_id="agent-7"), ("assigned_human", True, "agent-7", True)),
            ("agent", ("assigned_human", True, "agent-7", False)),
            ("customer", ("assigned_human", True, "agent-7", True)),
            (ResolveConversation(), ("resolved", True, "agent-7", False)),
            ("customer", ("assigned_human", True, "agent-7", True)),
            (ReturnToAssistant(), ("open", False, None, False)),
            ("assistant", ("open", False, None, False)),
            (CloseConversation(), ("closed", False, None, False)),
            (ReopenConversation(reason="back"), ("open", False, None, False)),
        ]
        for step, expected in steps:
            if isinstance(step, str):
                await conversations.post(cid, f"{step} says " + "x" * 300, sender=step)
            else:
                await conversations.do(cid, step)
            await project(deps)
            row = await _summary(deps, cid)
            assert _flags(row) == expected, step
            state = conversations.state(cid)
            assert (row["status"], row["handed_off"], row["assignee"]) == (
                state.status,
                state.handed_off,
                state.assignee,
            )
        assert row["message_count"] == 6
        assert row["last_message_preview"] == ("assistant says " + "x" * 300)[:200]
        assert (row["tenant_id"], row["channel"], row["customer_id"]) == (
            tenant_id,
            "whatsapp",
            "+33600000000",
        )
        assert row["created_at"] <= row["last_message_at"] <= row["updated_at"]

    async def test_a_page_applied_twice_changes_nothing(self, deps: Deps) -> None:
        tenant_id = await new_tenant(deps)
        conversations = Conversations(deps)
        for n in range(3):
            cid = await conversations.open(tenant_id)
            await conversations.post(cid, f"hello {n}")
            await conversations.do(cid, HandOffConversation(reason="r"))
        await project(deps)
        before_list = await _rows(deps, "conversations.conversation_list", "conversation_id")
        before_messages = await _rows(deps, "conversations.conversation_messages", "message_id")
        page = await deps.store.read_all(after=0, limit=1000)
        for projection in (CONVERSATION_LIST, CONVERSATION_MESSAGES):
            async with deps.engine.begin() as conn:
                generation = (await load_checkpoint(conn, projection.name)).generation
                await conn.execution_options(schema_translate_map=projection.translate(generation))
                await projection.apply(conn, page)
        assert (
            await _rows(deps, "conversations.conversation_list", "conversation_id") == before_list
        )
        assert (
            await _rows(deps, "conversations.conversation_messages", "message_id")
            == before_messages
        )


class TestRebuild:
    async def test_a_rebuild_of_both_equals_the_live_model(self, deps: Deps) -> None:
        conversations = Conversations(deps)
        for tenant in ("Acme", "Globex"):
            tenant_id = await new_tenant(deps, tenant)
            for n in range(4):
                cid = await conversations.open(tenant_id, channel=f"ch{n % 2}")
                await conversations.post(cid, "first")
                if n % 2:
                    await conversations.do(cid, AssignConversation(agent_id=f"a{n}"))
                await conversations.post(cid, "second", sender="agent" if n % 2 else "assistant")
                if n == 3:
                    await conversations.do(cid, ResolveConversation())
        await project(deps)
        views = {
            "conversations.conversation_list": "tenant_id, conversation_id",
            "conversations.conversation_messages": "tenant_id, message_id",
        }
        live = {view: await _rows(deps, view, order) for view, order in views.items()}
        assert len(live["conversations.conversation_list"]) == 8
        assert len(live["conversations.conversation_messages"]) == 16
        for projection in (CONVERSATION_LIST, CONVERSATION_MESSAGES):
            result = await rebuild(projection, store=deps.store, handover_timeout=10)
            assert (result.generation, result.dropped_generation) == (2, 1)
        rebuilt = {view: await _rows(deps, view, order) for view, order in views.items()}
        assert rebuilt == live
