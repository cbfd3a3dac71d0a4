"""GET /v1/conversations and GET /v1/conversations/{id}/messages over the read models."""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from metachat.api.app import create_app
from metachat.bootstrap import Deps, build
from metachat.conversations.commands import HandOffConversation
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.handlers import create_tenant
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import Conversations, project


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


@pytest_asyncio.fixture
async def client(deps: Deps) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(deps)) as test_client:
        yield test_client


async def _tenant(deps: Deps, name: str) -> tuple[uuid.UUID, dict[str, str]]:
    issued = await create_tenant(
        name, deps=deps.tenants, actor=Actor.operator("test"), correlation_id=uuid7()
    )
    return issued.tenant_id, {"Authorization": f"Bearer {issued.api_key}"}


async def _get(
    client: AsyncTestClient[Litestar], url: str, auth: dict[str, str], **params: Any
) -> Any:
    response = await client.get(url, headers=auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


class TestReadRoutes:
    async def test_lists_filters_and_pages_with_counts(
        self, deps: Deps, client: AsyncTestClient[Litestar]
    ) -> None:
        tenant_id, auth = await _tenant(deps, "Acme")
        conversations = Conversations(deps)
        handed = set()
        for n in range(5):
            cid = await conversations.open(tenant_id)
            await conversations.post(cid, f"hello {n}")
            if n % 2:
                await conversations.do(cid, HandOffConversation(reason="r"))
                handed.add(str(cid))
        await project(deps)
        first = await _get(client, "/v1/conversations", auth, limit=3)
        second = await _get(client, "/v1/conversations", auth, limit=3, cursor=first["next_cursor"])
        needing = await _get(client, "/v1/conversations", auth, needs_human_attention="true")
        opened = await _get(client, "/v1/conversations", auth, status="open")
        ids = [item["id"] for item in first["items"] + second["items"]]
        assert len(ids) == len(set(ids)) == 5
        assert second["next_cursor"] is None
        assert first["counts"] == {"open": 3, "assigned_human": 2, "resolved": 0, "closed": 0}
        assert {item["id"] for item in needing["items"]} == handed
        assert len(opened["items"]) == 3
        assert first["items"][0]["last_message_preview"].startswith("hello")
        bad = await client.get("/v1/conversations", headers=auth, params={"status": "nope"})
        assert bad.status_code == 422, bad.text

    async def test_messages_newest_first_and_other_tenants_get_404(
        self, deps: Deps, client: AsyncTestClient[Litestar]
    ) -> None:
        tenant_id, auth = await _tenant(deps, "Acme")
        _, other_auth = await _tenant(deps, "Globex")
        conversations = Conversations(deps)
        cid = await conversations.open(tenant_id)
        posted = [await conversations.post(cid, f"message {n}") for n in range(5)]
        await project(deps)
        url = f"/v1/conversations/{cid}/messages"
        newest = await _get(client, url, auth, limit=2)
        older = await _get(client, url, auth, limit=2, before=newest["next_cursor"])
        oldest = await _get(client, url, auth, limit=2, before=older["next_cursor"])
        got = [m["id"] for m in newest["items"] + older["items"] + oldest["items"]]
        assert got == [str(m) for m in reversed(posted)]
        assert oldest["next_cursor"] is None
        assert newest["items"][0]["text"] == "message 4"
        theirs = await client.get(url, headers=other_auth)
        assert theirs.status_code == 404, theirs.text
        unknown = await client.get(f"/v1/conversations/{uuid.uuid4()}/messages", headers=auth)
        assert unknown.status_code == 404
        listed = await _get(client, "/v1/conversations", other_auth)
        assert listed["items"] == []
