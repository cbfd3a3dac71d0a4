"""Server-Sent Events of a conversation, over a real socket and the real event store."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio

from metachat.api.app import create_app
from metachat.bootstrap import Deps, build
from metachat.conversations.events import ConversationOpened, ConversationResolved, MessagePosted
from metachat.conversations.model import stream_id
from metachat.eventstore.envelope import Event, Metadata
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.handlers import create_tenant
from tests.conftest import make_settings
from tests.integration.api.live_server import serving

READ_GUARD = 30.0
"""Seconds before a read is declared hung (a hang guard, not a timing claim)."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stream_deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=5)
    yield built
    await built.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def base_url(stream_deps: Deps) -> AsyncIterator[str]:
    async with serving(create_app(stream_deps)) as url:
        yield url


class Conversation:
    """A conversation of a fresh tenant, written through the real store."""

    def __init__(self, deps: Deps, tenant_id: uuid.UUID, api_key: str) -> None:
        self.deps, self.tenant_id, self.api_key = deps, tenant_id, api_key
        self.id = uuid7()
        self.version = 0

    async def append(self, *events: Event) -> None:
        metadata = Metadata(
            tenant_id=self.tenant_id, actor=Actor.system("test"), correlation_id=uuid7()
        )
        await self.deps.store.append(
            stream_id(self.id), list(events), expected_version=self.version, metadata=metadata
        )
        self.version += len(events)

    async def post(self, text: str) -> None:
        await self.append(
            MessagePosted(conversation_id=self.id, message_id=uuid7(), sender="customer", text=text)
        )


async def _conversation(deps: Deps, name: str = "Acme") -> Conversation:
    issued = await create_tenant(
        name, deps=deps.tenants, actor=Actor.operator("test"), correlation_id=uuid7()
    )
    conversation = Conversation(deps, issued.tenant_id, issued.api_key)
    await conversation.append(
        ConversationOpened(conversation_id=conversation.id, channel="api", customer_id="c-1")
    )
    return conversation


async def _events(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """Read `count` SSE events (comments skipped) from a line iterator."""
    received: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(READ_GUARD):
        async for line in lines:
            if line.startswith(":"):
                continue
            if line == "":
                if current:
                    received.append(
                        {**current, "data": json.loads(current["data"]), "id": int(current["id"])}
                    )
                    current = {}
                if len(received) == count:
                    return received
                continue
            field, _, value = line.partition(":")
            current[field] = value.strip()
    return received


def _auth(key: str, last_event_id: int | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return headers


async def test_streams_history_then_live_events_as_they_commit(
    stream_deps: Deps, base_url: str
) -> None:
    conversation = await _conversation(stream_deps)
    url = f"{base_url}/v1/conversations/{conversation.id}/stream"
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", url, headers=_auth(conversation.api_key)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        [opened] = await _events(lines, 1)
        assert opened["id"] == 1
        assert opened["event"] == "conversations.conversation_opened"
        assert opened["data"]["payload"]["customer_id"] == "c-1"

        await conversation.post("hello")
        await conversation.append(ConversationResolved(conversation_id=conversation.id))
        posted, resolved = await _events(lines, 2)
    assert (posted["id"], posted["event"]) == (2, "conversations.message_posted")
    assert posted["data"]["type"] == "conversations.message_posted"
    assert posted["data"]["payload"]["text"] == "hello"
    assert posted["data"]["occurred_at"]
    assert (resolved["id"], resolved["event"]) == (3, "conversations.conversation_resolved")


async def test_reconnecting_with_last_event_id_sends_only_the_missed_events(
    stream_deps: Deps, base_url: str
) -> None:
    conversation = await _conversation(stream_deps)
    for text in ("one", "two", "three"):
        await conversation.post(text)
    url = f"{base_url}/v1/conversations/{conversation.id}/stream"
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", url, headers=_auth(conversation.api_key, 2)) as response,
    ):
        assert response.status_code == 200
        missed = await _events(response.aiter_lines(), 2)
    assert [(e["id"], e["data"]["payload"]["text"]) for e in missed] == [(3, "two"), (4, "three")]


async def test_another_tenants_or_unknown_conversation_is_not_found(
    stream_deps: Deps, base_url: str
) -> None:
    conversation = await _conversation(stream_deps, "Acme")
    stranger = await _conversation(stream_deps, "Globex")
    async with httpx.AsyncClient(base_url=base_url) as http:
        theirs = await http.get(
            f"/v1/conversations/{conversation.id}/stream", headers=_auth(stranger.api_key)
        )
        unknown = await http.get(
            f"/v1/conversations/{uuid7()}/stream", headers=_auth(conversation.api_key)
        )
        bad_resume = await http.get(
            f"/v1/conversations/{conversation.id}/stream",
            headers={**_auth(conversation.api_key), "Last-Event-ID": "not-a-number"},
        )
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "not_found"
    assert unknown.status_code == 404
    assert bad_resume.status_code == 422
    assert bad_resume.json()["code"] == "invalid_request"
