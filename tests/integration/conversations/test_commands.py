"""The conversation commands over the API: every route, every refusal, the sticky handoff."""

# ruff: noqa: F811 - the API fixtures are imported by name and requested as arguments

import uuid
from typing import Any

import pytest

from metachat.conversations import model
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    Tenant,
    api_deps,
    api_settings,
    app,
    assert_problem,
    client,
    new_tenant,
    other_tenant,
    tenant,
)

OPEN = {"channel": "api", "customer_id": "cust-1", "metadata": {"locale": "de"}}


async def open_conversation(client, tenant: Tenant, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/conversations", headers=tenant.auth, json=OPEN | changes)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def act(client, tenant: Tenant, cid: str, action: str, json: Any = None) -> Any:
    return await client.post(f"/v1/conversations/{cid}/{action}", headers=tenant.auth, json=json)


async def assert_status(client, tenant: Tenant, cid: str, status: str) -> dict[str, Any]:
    response = await client.get(f"/v1/conversations/{cid}", headers=tenant.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


class TestOpenAndRead:
    async def test_open_answers_the_conversation_with_its_id(self, client, tenant) -> None:
        body = await open_conversation(client, tenant)
        assert uuid.UUID(body["id"])
        assert body["status"] == "open"
        assert (body["channel"], body["customer_id"]) == ("api", "cust-1")
        assert body["metadata"] == {"locale": "de"}
        assert body["handed_off"] is False
        assert body["assignee"] is None
        assert body["created_at"]

    async def test_get_reads_the_state_from_the_stream(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        await act(client, tenant, cid, "assign", {"agent_id": "agent-7"})
        body = await assert_status(client, tenant, cid, "assigned_human")
        assert (body["handed_off"], body["assignee"]) == (True, "agent-7")
        assert (body["channel"], body["customer_id"], body["metadata"]) == (
            "api",
            "cust-1",
            {"locale": "de"},
        )

    async def test_open_refuses_a_blank_customer(self, client, tenant) -> None:
        response = await client.post(
            "/v1/conversations", headers=tenant.auth, json=OPEN | {"customer_id": "  "}
        )
        assert_problem(response, 422, "validation_error")

    async def test_the_actor_and_correlation_id_are_recorded(
        self, client, tenant, api_deps
    ) -> None:
        correlation = str(uuid.uuid4())
        response = await client.post(
            "/v1/conversations", headers=tenant.auth | {"X-Correlation-ID": correlation}, json=OPEN
        )
        cid = uuid.UUID(response.json()["id"])
        (first,) = await api_deps.store.read_stream(model.stream_id(cid))
        assert str(first.envelope.correlation_id) == correlation
        assert first.envelope.actor.kind == "api_key"
        assert first.envelope.actor.id == str(tenant.key_id)
        assert first.envelope.tenant_id == tenant.tenant_id


class TestMessages:
    async def test_customer_message_is_created(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        response = await act(client, tenant, cid, "messages", {"text": "hi", "external_id": "w1"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["conversation_id"], body["sender"], body["text"]) == (cid, "customer", "hi")
        assert body["external_id"] == "w1"
        assert uuid.UUID(body["id"])

    async def test_agent_message_needs_an_author_from_an_api_key(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        refused = await act(client, tenant, cid, "agent-messages", {"text": "hello"})
        assert_problem(refused, 422, "validation_error")
        posted = await act(
            client, tenant, cid, "agent-messages", {"text": "hello", "author_id": "agent-1"}
        )
        assert posted.status_code == 201, posted.text
        assert (posted.json()["sender"], posted.json()["author_id"]) == ("agent", "agent-1")

    async def test_assistant_message_while_open(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        response = await act(client, tenant, cid, "assistant-messages", {"text": "How can I help?"})
        assert response.status_code == 201, response.text
        assert response.json()["sender"] == "assistant"

    async def test_empty_text_is_refused(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        assert_problem(
            await act(client, tenant, cid, "messages", {"text": ""}), 422, "invalid_request"
        )


class TestTransitions:
    async def test_the_whole_life_of_a_conversation(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        steps: list[tuple[str, Any, str]] = [
            ("handoff", {"reason": "angry customer"}, "assigned_human"),
            ("assign", {"agent_id": "agent-1"}, "assigned_human"),
            ("return-to-assistant", None, "open"),
            ("resolve", None, "resolved"),
            ("reopen", None, "open"),
            ("close", None, "closed"),
            ("reopen", None, "open"),
        ]
        for action, json, status in steps:
            response = await act(client, tenant, cid, action, json)
            assert response.status_code == 200, (action, response.text)
            assert response.json()["status"] == status, action
            await assert_status(client, tenant, cid, status)

    @pytest.mark.parametrize(
        "case",
        [
            ([], "return-to-assistant", None, "open"),
            ([], "reopen", None, "open"),
            (["resolve"], "resolve", None, "resolved"),
            (["resolve"], "assign", {"agent_id": "a"}, "resolved"),
            (["resolve"], "handoff", {"reason": "r"}, "resolved"),
            (["resolve"], "agent-messages", {"text": "t", "author_id": "a"}, "resolved"),
            (["close"], "close", None, "closed"),
            (["close"], "resolve", None, "closed"),
            (["close"], "assign", {"agent_id": "a"}, "closed"),
            (["close"], "handoff", {"reason": "r"}, "closed"),
            (["close"], "return-to-assistant", None, "closed"),
            (["close"], "messages", {"text": "t"}, "closed"),
            (["close"], "agent-messages", {"text": "t", "author_id": "a"}, "closed"),
            (["close"], "assistant-messages", {"text": "t"}, "closed"),
            (["resolve"], "assistant-messages", {"text": "t"}, "resolved"),
            (["handoff"], "assistant-messages", {"text": "t"}, "assigned_human"),
            (["handoff", "resolve"], "return-to-assistant", None, "resolved"),
        ],
    )
    async def test_illegal_transition_is_409_with_the_status(self, client, tenant, case) -> None:
        setup, action, json, status = case
        cid = (await open_conversation(client, tenant))["id"]
        bodies = {"handoff": {"reason": "needs a human"}}
        for step in setup:
            assert (await act(client, tenant, cid, step, bodies.get(step))).status_code == 200
        body = assert_problem(
            await act(client, tenant, cid, action, json), 409, "illegal_transition"
        )
        assert body["conversation_status"] == status
        assert body["assignee"] is None  # JSON null, not the string "None"


class TestStickyHandoff:
    async def test_a_customer_message_keeps_it_with_the_humans(self, client, tenant) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        await act(client, tenant, cid, "handoff", {"reason": "asked for a person"})
        posted = await act(client, tenant, cid, "messages", {"text": "hello? anyone?"})
        assert posted.status_code == 201, posted.text
        body = await assert_status(client, tenant, cid, "assigned_human")
        assert body["handed_off"] is True
        refused = await act(client, tenant, cid, "assistant-messages", {"text": "I can help!"})
        assert (
            assert_problem(refused, 409, "illegal_transition")["conversation_status"]
            == "assigned_human"
        )

    async def test_a_customer_message_reopens_a_resolved_one_to_the_humans(
        self, client, tenant
    ) -> None:
        cid = (await open_conversation(client, tenant))["id"]
        await act(client, tenant, cid, "assign", {"agent_id": "agent-2"})
        await act(client, tenant, cid, "resolve")
        await act(client, tenant, cid, "messages", {"text": "one more thing"})
        body = await assert_status(client, tenant, cid, "assigned_human")
        assert body["assignee"] == "agent-2"


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("POST", "/messages", {"text": "t"}),
    ("POST", "/agent-messages", {"text": "t", "author_id": "a"}),
    ("POST", "/assistant-messages", {"text": "t"}),
    ("POST", "/assign", {"agent_id": "a"}),
    ("POST", "/handoff", {"reason": "r"}),
    ("POST", "/return-to-assistant", None),
    ("POST", "/resolve", None),
    ("POST", "/close", None),
    ("POST", "/reopen", None),
]


class TestTenantIsolation:
    @pytest.mark.parametrize("route", ROUTES)
    async def test_another_tenants_conversation_is_not_found(
        self, client, tenant, other_tenant, route
    ) -> None:
        method, suffix, json = route
        cid = (await open_conversation(client, tenant))["id"]
        url = f"/v1/conversations/{cid}{suffix}"
        response = await client.request(method, url, headers=other_tenant.auth, json=json)
        assert_problem(response, 404, "not_found")
        await assert_status(client, tenant, cid, "open")

    @pytest.mark.parametrize(("method", "suffix", "json"), ROUTES)
    async def test_an_unknown_conversation_is_not_found(
        self, client, tenant, method, suffix, json
    ) -> None:
        url = f"/v1/conversations/{uuid.uuid4()}{suffix}"
        response = await client.request(method, url, headers=tenant.auth, json=json)
        assert_problem(response, 404, "not_found")

    async def test_scopes_are_enforced(self, client, tenant) -> None:
        created = await client.post(
            "/v1/api-keys",
            headers=tenant.auth,
            json={"name": "reader", "scopes": ["conversations:read"]},
        )
        reader = {"Authorization": f"Bearer {created.json()['api_key']}"}
        cid = (await open_conversation(client, tenant))["id"]
        assert (await client.get(f"/v1/conversations/{cid}", headers=reader)).status_code == 200
        refused = await client.post("/v1/conversations", headers=reader, json=OPEN)
        assert_problem(refused, 403, "forbidden")
