"""`Idempotency-Key` on every POST under /v1: one effect, the first answer replayed byte for byte."""

# ruff: noqa: F811 - the API fixtures are imported by name and requested as arguments

import asyncio
import uuid

from sqlalchemy import text

from metachat.conversations import model
from metachat.conversations.events import MessagePosted
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    api_deps,
    api_settings,
    app,
    assert_problem,
    client,
    new_tenant,
    other_tenant,
    tenant,
)

OPEN = {"channel": "api", "customer_id": "cust-idem"}


def keyed(tenant, key: str) -> dict[str, str]:
    return tenant.auth | {"Idempotency-Key": key}


async def opened(api_deps, tenant) -> int:
    async with api_deps.engine.connect() as conn:
        count = await conn.scalar(
            text("""SELECT count(*) FROM eventstore.events
                    WHERE tenant_id = :t AND type = 'conversations.conversation_opened'"""),
            {"t": tenant.tenant_id},
        )
    return int(count or 0)


class TestReplay:
    async def test_a_repeat_gets_the_first_answer_byte_for_byte(
        self, client, new_tenant, api_deps
    ) -> None:
        tenant = await new_tenant("Idem")
        key = str(uuid.uuid4())
        first = await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        again = await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert again.headers["x-correlation-id"] != first.headers["x-correlation-id"]
        assert await opened(api_deps, tenant) == 1

    async def test_without_a_key_every_post_acts(self, client, new_tenant, api_deps) -> None:
        tenant = await new_tenant("NoKey")
        for _ in range(2):
            await client.post("/v1/conversations", headers=tenant.auth, json=OPEN)
        assert await opened(api_deps, tenant) == 2

    async def test_a_refusal_is_replayed_too(self, client, tenant) -> None:
        cid = (await client.post("/v1/conversations", headers=tenant.auth, json=OPEN)).json()["id"]
        key = str(uuid.uuid4())
        url = f"/v1/conversations/{cid}/reopen"
        first = await client.post(url, headers=keyed(tenant, key))
        assert_problem(first, 409, "illegal_transition")
        again = await client.post(url, headers=keyed(tenant, key))
        assert (again.status_code, again.content) == (409, first.content)

    async def test_existing_routes_are_covered(self, client, tenant) -> None:
        key = str(uuid.uuid4())
        body = {"name": "ci", "scopes": ["conversations:read"]}
        first = await client.post("/v1/api-keys", headers=keyed(tenant, key), json=body)
        again = await client.post("/v1/api-keys", headers=keyed(tenant, key), json=body)
        assert first.status_code == 201, first.text
        assert again.content == first.content
        listed = (await client.get("/v1/api-keys", headers=tenant.auth)).json()
        assert [k["id"] for k in listed].count(first.json()["id"]) == 1
        assert sum(1 for k in listed if k["name"] == "ci") == 1

    async def test_keys_belong_to_a_tenant(self, client, tenant, other_tenant) -> None:
        key = str(uuid.uuid4())
        mine = await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        theirs = await client.post("/v1/conversations", headers=keyed(other_tenant, key), json=OPEN)
        assert theirs.status_code == 201, theirs.text
        assert "idempotent-replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]


class TestMisuse:
    async def test_same_key_with_another_body_is_422(self, client, tenant) -> None:
        key = str(uuid.uuid4())
        await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        other = OPEN | {"customer_id": "someone-else"}
        response = await client.post("/v1/conversations", headers=keyed(tenant, key), json=other)
        assert_problem(response, 422, "idempotency_key_reused")

    async def test_same_key_on_another_path_is_422(self, client, tenant) -> None:
        cid = (await client.post("/v1/conversations", headers=tenant.auth, json=OPEN)).json()["id"]
        key = str(uuid.uuid4())
        await client.post(f"/v1/conversations/{cid}/resolve", headers=keyed(tenant, key))
        response = await client.post(f"/v1/conversations/{cid}/close", headers=keyed(tenant, key))
        assert_problem(response, 422, "idempotency_key_reused")

    async def test_an_expired_key_acts_again(self, client, new_tenant, api_deps) -> None:
        tenant = await new_tenant("Expiry")
        key = str(uuid.uuid4())
        await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        async with api_deps.engine.begin() as conn:
            await conn.execute(
                text("""UPDATE api.idempotency_keys SET created_at = now() - interval '25 hours'
                        WHERE tenant_id = :t"""),
                {"t": tenant.tenant_id},
            )
        again = await client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
        assert again.status_code == 201
        assert "idempotent-replayed" not in again.headers
        assert await opened(api_deps, tenant) == 2

    async def test_a_key_that_is_too_long_is_refused(self, client, tenant) -> None:
        response = await client.post(
            "/v1/conversations", headers=keyed(tenant, "k" * 256), json=OPEN
        )
        assert_problem(response, 422, "validation_error")


class TestConcurrentRepeats:
    async def test_one_effect_and_identical_answers(self, client, new_tenant, api_deps) -> None:
        tenant = await new_tenant("Race")
        key = str(uuid.uuid4())
        responses = await asyncio.gather(
            *(
                client.post("/v1/conversations", headers=keyed(tenant, key), json=OPEN)
                for _ in range(20)
            )
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        assert len({r.content for r in responses}) == 1
        assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
        assert await opened(api_deps, tenant) == 1

    async def test_concurrent_message_posts_store_one_message(
        self, client, tenant, api_deps
    ) -> None:
        cid = (await client.post("/v1/conversations", headers=tenant.auth, json=OPEN)).json()["id"]
        key = str(uuid.uuid4())
        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/conversations/{cid}/messages",
                    headers=keyed(tenant, key),
                    json={"text": "double click"},
                )
                for _ in range(20)
            )
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.content for r in responses}) == 1
        recorded = await api_deps.store.read_stream(model.stream_id(uuid.UUID(cid)))
        assert sum(1 for r in recorded if isinstance(r.event, MessagePosted)) == 1
