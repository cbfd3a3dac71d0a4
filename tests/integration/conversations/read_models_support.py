"""Helpers for the read model tests: legal histories through the model, and projecting them."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.bootstrap import Deps
from metachat.conversations import model
from metachat.conversations.commands import OpenConversation, PostMessage
from metachat.conversations.events import MessagePosted
from metachat.conversations.projections import CONVERSATION_LIST, CONVERSATION_MESSAGES
from metachat.eventstore.envelope import Envelope, Metadata, Recorded
from metachat.eventstore.projection import Projection, load_checkpoint, process_batch
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.handlers import create_tenant

READ_MODELS = (CONVERSATION_LIST, CONVERSATION_MESSAGES)


async def new_tenant(deps: Deps, name: str = "Acme") -> uuid.UUID:
    issued = await create_tenant(
        name, deps=deps.tenants, actor=Actor.operator("test"), correlation_id=uuid7()
    )
    return issued.tenant_id


class Conversations:
    """Drives conversations through `model.decide` and appends what it decides to the store."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.states: dict[uuid.UUID, tuple[uuid.UUID, model.ConversationState, int]] = {}

    async def open(
        self, tenant_id: uuid.UUID, *, channel: str = "api", customer: str = "c1"
    ) -> uuid.UUID:
        conversation_id = uuid7()
        self.states[conversation_id] = (tenant_id, model.ConversationState(), 0)
        await self.do(
            conversation_id,
            OpenConversation(
                conversation_id=conversation_id, channel=channel, customer_id=customer
            ),
        )
        return conversation_id

    async def post(
        self, conversation_id: uuid.UUID, text: str, sender: str = "customer"
    ) -> uuid.UUID:
        message_id = uuid7()
        await self.do(
            conversation_id,
            PostMessage(message_id=message_id, sender=sender, text=text),  # type: ignore[arg-type]
        )
        return message_id

    async def do(self, conversation_id: uuid.UUID, command: model.Command) -> list[Recorded]:
        tenant_id, state, version = self.states[conversation_id]
        events = model.decide(state, command)
        metadata = Metadata(tenant_id=tenant_id, actor=Actor.system("test"), correlation_id=uuid7())
        recorded = await self.deps.store.append(
            model.stream_id(conversation_id), events, expected_version=version, metadata=metadata
        )
        for event in events:
            state = model.evolve(state, event)
        self.states[conversation_id] = (tenant_id, state, version + len(events))
        return recorded

    def state(self, conversation_id: uuid.UUID) -> model.ConversationState:
        return self.states[conversation_id][1]


async def project(deps: Deps, projections: Sequence[Projection] = READ_MODELS) -> None:
    """Run every page of the store through the projections, as the runner does."""
    for projection in projections:
        async with deps.engine.connect() as conn:
            async with conn.begin():
                checkpoint = await load_checkpoint(conn, projection.name)
            await conn.execution_options(
                schema_translate_map=projection.translate(checkpoint.generation)
            )
            reader = deps.store.reader()
            count = -1
            while count != 0:
                checkpoint, count = await process_batch(
                    conn, projection, reader, checkpoint, limit=100
                )


def a_message(
    tenant_id: uuid.UUID, conversation_id: uuid.UUID, posted_at: datetime, *, position: int
) -> Recorded:
    """A `MessagePosted` as the store would record it, dated `posted_at`."""
    event = MessagePosted(
        conversation_id=conversation_id, message_id=uuid7(), sender="customer", text="hello"
    )
    envelope = Envelope(
        event_id=uuid7(),
        type=MessagePosted.type,
        schema_version=1,
        tenant_id=tenant_id,
        stream_id=model.stream_id(conversation_id),
        stream_version=position,
        position=position,
        occurred_at=posted_at,
        correlation_id=uuid7(),
        causation_id=None,
        actor=Actor.system("test"),
        payload={},
    )
    return Recorded(envelope=envelope, event=event)


async def apply_messages(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Apply records with the messages handler, in the live generation (caller's transaction)."""
    checkpoint = await load_checkpoint(conn, CONVERSATION_MESSAGES.name)
    await conn.execution_options(
        schema_translate_map=CONVERSATION_MESSAGES.translate(checkpoint.generation)
    )
    await CONVERSATION_MESSAGES.apply(conn, records)
