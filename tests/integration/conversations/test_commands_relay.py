"""A message posted over the API reaches `metachat.events` with its text, through the relay."""

# ruff: noqa: F811 - the API fixtures are imported by name and requested as arguments

import asyncio

import msgspec

from metachat.eventstore.envelope import Envelope
from metachat.worker.relay_role import run_relay
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    api_deps,
    api_settings,
    app,
    client,
    new_tenant,
    tenant,
)
from tests.integration.eventstore.relay_support import Sink
from tests.waiting import eventually


async def test_posted_message_is_published_with_its_text(client, tenant, api_deps) -> None:
    settings = api_deps.settings
    binding = f"{tenant.tenant_id}.conversations.#"
    async with Sink(settings.amqp.url, settings.amqp.exchange, binding=binding) as sink:
        opened = await client.post(
            "/v1/conversations",
            headers=tenant.auth,
            json={"channel": "api", "customer_id": "cust-relay", "metadata": {"k": "v"}},
        )
        cid = opened.json()["id"]
        posted = await client.post(
            f"/v1/conversations/{cid}/messages",
            headers=tenant.auth,
            json={"text": "Where is my parcel?", "external_id": "wa-1"},
        )
        assert posted.status_code == 201, posted.text
        stop = asyncio.Event()
        relay = asyncio.create_task(run_relay(api_deps, stop))
        try:
            await eventually(lambda: _received(sink, 2))
        finally:
            stop.set()
            await relay
    envelopes = [msgspec.json.decode(m.body, type=Envelope) for m in sink.messages]
    assert [e.type for e in envelopes] == [
        "conversations.conversation_opened",
        "conversations.message_posted",
    ]
    message = envelopes[1]
    assert sink.messages[1].routing_key == f"{tenant.tenant_id}.conversations.message_posted"
    assert message.payload["text"] == "Where is my parcel?"
    assert message.payload["conversation_id"] == cid
    assert message.payload["message_id"] == posted.json()["id"]
    assert message.payload["external_id"] == "wa-1"
    assert message.payload["sender"] == "customer"
    assert message.actor.id == str(tenant.key_id)


async def _received(sink: Sink, count: int) -> bool:
    return len(sink.messages) >= count
