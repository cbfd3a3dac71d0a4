"""Conversation list and message queries: filters, counts, keyset pages without gaps or repeats."""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from metachat.bootstrap import Deps, build
from metachat.conversations.commands import (
    AssignConversation,
    HandOffConversation,
    ResolveConversation,
)
from metachat.conversations.queries import (
    ConversationSummary,
    count_by_status,
    get_conversation,
    list_conversations,
    list_messages,
)
from metachat.kernel.errors import ValidationError
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import (
    Conversations,
    a_message,
    apply_messages,
    new_tenant,
    project,
)


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


async def _all_pages(deps: Deps, *, limit: int, **filters: Any) -> list[list[ConversationSummary]]:
    pages, cursor = [], None
    async with deps.engine.connect() as conn:
        while True:
            page = await list_conversations(conn, limit=limit, cursor=cursor, **filters)
            pages.append(page.items)
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


@pytest_asyncio.fixture
async def seeded(deps: Deps) -> tuple[uuid.UUID, uuid.UUID, Conversations]:
    tenant_a, tenant_b = await new_tenant(deps, "Acme"), await new_tenant(deps, "Globex")
    conversations = Conversations(deps)
    for n in range(23):
        cid = await conversations.open(tenant_a, channel="whatsapp" if n % 3 == 0 else "api")
        await conversations.post(cid, f"hello {n}")
        if n % 4 == 1:
            await conversations.do(cid, HandOffConversation(reason="r"))
        if n % 4 == 2:
            await conversations.do(cid, AssignConversation(agent_id="agent-1"))
            await conversations.post(cid, "on it", sender="agent")
        if n % 5 == 4:
            await conversations.do(cid, ResolveConversation())
    for _ in range(4):
        await conversations.open(tenant_b)
    await project(deps)
    return tenant_a, tenant_b, conversations


class TestListConversations:
    async def test_pages_have_no_gaps_or_repeats(
        self, deps: Deps, seeded: tuple[uuid.UUID, uuid.UUID, Conversations]
    ) -> None:
        tenant_a, _, conversations = seeded
        pages = await _all_pages(deps, tenant_id=tenant_a, limit=5)
        items = [item for page in pages for item in page]
        assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
        ids = [item.conversation_id for item in items]
        expected = {cid for cid, (t, _, _) in conversations.states.items() if t == tenant_a}
        assert len(ids) == len(set(ids)) == 23
        assert set(ids) == expected
        keys = [(item.updated_at, item.conversation_id) for item in items]
        assert keys == sorted(keys, reverse=True)

    async def test_filters_match_the_model(
        self, deps: Deps, seeded: tuple[uuid.UUID, uuid.UUID, Conversations]
    ) -> None:
        tenant_a, _, conversations = seeded
        everything = [i for p in await _all_pages(deps, tenant_id=tenant_a, limit=50) for i in p]

        async def ids(**filters: Any) -> set[uuid.UUID]:
            pages = await _all_pages(deps, tenant_id=tenant_a, limit=4, **filters)
            return {item.conversation_id for page in pages for item in page}

        def where(check: Callable[[ConversationSummary], bool]) -> set[uuid.UUID]:
            return {item.conversation_id for item in everything if check(item)}

        resolved = {c for c, (t, s, _) in conversations.states.items() if s.status == "resolved"}
        assert await ids(status="resolved") == resolved == where(lambda i: i.status == "resolved")
        assert len(resolved) == 4
        assert await ids(channel="whatsapp") == where(lambda i: i.channel == "whatsapp")
        assert len(await ids(channel="whatsapp")) == 8
        assert await ids(assignee="agent-1") == where(lambda i: i.assignee == "agent-1")
        needing = await ids(needs_human=True)
        assert needing == where(lambda i: i.status == "assigned_human" and i.assignee is None)
        assert needing
        assert await ids(needs_human=False) == where(lambda i: not i.needs_human_attention)
        middle = sorted(item.updated_at for item in everything)[10]
        assert await ids(updated_since=middle) == where(lambda i: i.updated_at >= middle)
        assert await ids(status="open", channel="api") == where(
            lambda i: i.status == "open" and i.channel == "api"
        )

    async def test_counts_by_status_and_isolation(
        self, deps: Deps, seeded: tuple[uuid.UUID, uuid.UUID, Conversations]
    ) -> None:
        tenant_a, tenant_b, conversations = seeded
        expected = dict.fromkeys(("open", "assigned_human", "resolved", "closed"), 0)
        for tenant_id, state, _ in conversations.states.values():
            if tenant_id == tenant_a:
                expected[state.status] += 1
        async with deps.engine.connect() as conn:
            counts = await count_by_status(conn, tenant_id=tenant_a)
            other = await count_by_status(conn, tenant_id=tenant_b)
            a_conversation = next(
                c for c, (t, _, _) in conversations.states.items() if t == tenant_a
            )
            mine = await get_conversation(conn, tenant_id=tenant_a, conversation_id=a_conversation)
            theirs = await get_conversation(
                conn, tenant_id=tenant_b, conversation_id=a_conversation
            )
        assert counts == expected
        assert sum(counts.values()) == 23
        assert other == {"open": 4, "assigned_human": 0, "resolved": 0, "closed": 0}
        assert mine is not None
        assert theirs is None

    async def test_a_cursor_it_did_not_issue_is_refused(self, deps: Deps) -> None:
        async with deps.engine.connect() as conn:
            with pytest.raises(ValidationError):
                await list_conversations(conn, tenant_id=uuid.uuid4(), limit=5, cursor="nope!")
            with pytest.raises(ValidationError):
                await list_conversations(conn, tenant_id=uuid.uuid4(), limit=5, channel="a\x00")
            with pytest.raises(ValidationError):
                await list_messages(
                    conn,
                    tenant_id=uuid.uuid4(),
                    conversation_id=uuid.uuid4(),
                    limit=5,
                    before="e30",
                )


class TestListMessages:
    async def test_newest_first_paged_backwards_across_a_month_boundary(self, deps: Deps) -> None:
        tenant_id, conversation_id = await new_tenant(deps), uuid.uuid4()
        start = datetime(2027, 1, 30, 22, tzinfo=UTC)
        records = [
            a_message(tenant_id, conversation_id, start + timedelta(hours=12 * n), position=n + 1)
            for n in range(7)
        ]
        other = a_message(tenant_id, uuid.uuid4(), start, position=100)
        async with deps.engine.begin() as conn:
            await apply_messages(conn, [*records, other])
        pages, before = [], None
        async with deps.engine.connect() as conn:
            while True:
                page = await list_messages(
                    conn,
                    tenant_id=tenant_id,
                    conversation_id=conversation_id,
                    limit=3,
                    before=before,
                )
                pages.append(page.items)
                if page.next_cursor is None:
                    break
                before = page.next_cursor
            foreign = await list_messages(
                conn, tenant_id=uuid.uuid4(), conversation_id=conversation_id, limit=10
            )
        assert [len(page) for page in pages] == [3, 3, 1]
        got = [m.message_id for page in pages for m in page]
        assert got == [r.event.message_id for r in reversed(records)]  # type: ignore[attr-defined]
        months = {m.posted_at.month for m in pages[1]}
        assert months == {1, 2}, "the second page straddles the month boundary"
        assert foreign.items == []
