"""The provider's message id: the same id in a conversation is stored once, even when raced."""

# ruff: noqa: F811 - the API fixtures are imported by name and requested as arguments

import asyncio
import uuid

from metachat.conversations import model
from metachat.conversations.events import MessagePosted
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    api_deps,
    api_settings,
    app,
    client,
    new_tenant,
    tenant,
)

OPEN = {"channel": "api", "customer_id": "cust-dedup"}


async def open_conversation(client, tenant) -> str:
    response = await client.post("/v1/conversations", headers=tenant.auth, json=OPEN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def posted(api_deps, cid: str) -> list[MessagePosted]:
    recorded = await api_deps.store.read_stream(model.stream_id(uuid.UUID(cid)))
    return [r.event for r in recorded if isinstance(r.event, MessagePosted)]


class TestDedupByExternalId:
    async def test_a_repeat_answers_200_with_the_stored_message(
        self, client, tenant, api_deps
    ) -> None:
        cid = await open_conversation(client, tenant)
        url = f"/v1/conversations/{cid}/messages"
        first = await client.post(
            url, headers=tenant.auth, json={"text": "hi", "external_id": "m1"}
        )
        again = await client.post(
            url, headers=tenant.auth, json={"text": "hi (resent)", "external_id": "m1"}
        )
        assert first.status_code == 201, first.text
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert [e.text for e in await posted(api_deps, cid)] == ["hi"]

    async def test_the_same_id_in_another_conversation_is_another_message(
        self, client, tenant, api_deps
    ) -> None:
        one, two = await open_conversation(client, tenant), await open_conversation(client, tenant)
        for cid in (one, two):
            response = await client.post(
                f"/v1/conversations/{cid}/messages",
                headers=tenant.auth,
                json={"text": "hi", "external_id": "same"},
            )
            assert response.status_code == 201, response.text
        assert len(await posted(api_deps, one)) == len(await posted(api_deps, two)) == 1

    async def test_concurrent_posts_with_one_id_store_one_message(
        self, client, tenant, api_deps
    ) -> None:
        cid = await open_conversation(client, tenant)
        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/conversations/{cid}/messages",
                    headers=tenant.auth,
                    json={"text": f"attempt {i}", "external_id": "webhook-42"},
                )
                for i in range(20)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 19 + [201], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len({r.json()["text"] for r in responses}) == 1
        assert len(await posted(api_deps, cid)) == 1

    async def test_concurrent_posts_with_different_ids_all_land(
        self, client, tenant, api_deps
    ) -> None:
        cid = await open_conversation(client, tenant)
        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/conversations/{cid}/messages",
                    headers=tenant.auth,
                    json={"text": f"message {i}", "external_id": f"w-{i}"},
                )
                for i in range(10)
            )
        )
        assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
        assert sorted(e.text for e in await posted(api_deps, cid)) == sorted(
            f"message {i}" for i in range(10)
        )
