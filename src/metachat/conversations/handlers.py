"""Use cases of the conversations context: load the stream, decide, append with the outbox.

Every command runs as one attempt (read the conversation's stream, check its tenant, decide,
append after the version read) and the whole attempt is retried when another writer appended
first. A stream whose first event belongs to another tenant is answered exactly like a missing
one, so a conversation id alone never reaches across tenants.
"""

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.conversations import model
from metachat.conversations.cache import StreamCache
from metachat.conversations.commands import (
    AssignConversation,
    CloseConversation,
    DeliverAssistantReply,
    HandOffConversation,
    OpenConversation,
    PostMessage,
    ReopenConversation,
    ResolveConversation,
    ReturnToAssistant,
)
from metachat.conversations.events import MessagePosted, Sender
from metachat.conversations.views import ConversationView, MessageView, conversation_view
from metachat.eventstore.envelope import Event, Metadata, Recorded
from metachat.eventstore.postgres import PostgresEventStore, StreamMovedError
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError, DomainError, NotFoundError
from metachat.kernel.ids import uuid7

T = TypeVar("T")
_ATTEMPTS = 10
"""Optimistic concurrency lets one writer per round win; a busy conversation needs a few rounds."""


class ConversationDeps(msgspec.Struct, frozen=True, kw_only=True):
    """What the conversations use cases need; `cache` is the process's (None: always read)."""

    store: PostgresEventStore
    cache: StreamCache | None = None


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """Who runs a command, for which tenant, under which correlation id."""

    tenant_id: uuid.UUID
    actor: Actor
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    """The event this command reacts to (a policy's trigger), if any."""

    @property
    def metadata(self) -> Metadata:
        """The metadata recorded on the events this command causes."""
        return Metadata(
            tenant_id=self.tenant_id,
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
        )


class PostedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A posted message; `created` is False when its external id had been seen (a retry)."""

    message: MessageView
    created: bool


async def _with_retry(attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry a whole load-decide-append on an optimistic concurrency conflict."""
    for number in range(1, _ATTEMPTS + 1):
        try:
            return await attempt()
        except ConcurrencyError:
            if number == _ATTEMPTS:
                raise
            # A little jitter keeps the losers of one round from colliding again in the next.
            await asyncio.sleep(secrets.randbelow(5 * number) / 1000)
    raise AssertionError("unreachable")


async def _load(
    store: PostgresEventStore,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    conn: AsyncConnection | None = None,
) -> list[Recorded]:
    recorded = await store.read_stream(model.stream_id(conversation_id), conn=conn)
    # The first envelope names the owner: another tenant's conversation is a missing one.
    if not recorded or recorded[0].envelope.tenant_id != tenant_id:
        raise NotFoundError("conversation not found", conversation_id=str(conversation_id))
    return recorded


def _decide_or_refusal(
    state: model.ConversationState, command: model.Command
) -> tuple[list[Event], DomainError | None]:
    """The events a command decides, or none and the refusal (to be checked on a fresh state)."""
    try:
        return model.decide(state, command), None
    except DomainError as exc:
        return [], exc


class NewStream(msgspec.Struct, frozen=True):
    """Events that start a stream of their own, committed with a conversation's change.

    The orchestrator's usage of one reply (`reply-<id>`): one transaction for both, so a reply
    is never committed without what it cost, nor its cost twice for one reply.
    """

    stream_id: str
    events: list[Event]


async def _append_after(
    deps: ConversationDeps,
    ctx: Context,
    stream: str,
    events: list[Event],
    version: int,
    *,
    along: NewStream | None = None,
) -> tuple[list[Recorded] | None, list[Recorded] | None]:
    """Append after `version`: (the events appended, None), or (None, what was missed if known).

    With `along`, its events are appended first in the same transaction (one round trip).
    """
    try:
        if along is not None:
            _, appended = await deps.store.append_together(
                [(along.stream_id, along.events, 0), (stream, events, version)],
                metadata=ctx.metadata,
            )
            return appended, None
        return (
            await deps.store.append_alone(
                stream, events, expected_version=version, metadata=ctx.metadata
            ),
            None,
        )
    except StreamMovedError as moved:
        return None, moved.newer  # read in the append's round trip
    except ConcurrencyError:
        return None, None  # a writer of the same version won at commit: read what it wrote


async def _append_cached(
    deps: ConversationDeps,
    ctx: Context,
    conversation_id: uuid.UUID,
    command: model.Command,
    along: NewStream | None = None,
) -> tuple[list[Recorded], list[Recorded]] | None:
    """Run a command from the stream this process remembers, in one round trip when it can.

    The decision is taken on the remembered state and appended after the remembered version in
    a transaction of its own (`append_alone`); the append's version check is what makes that
    safe. When the stream moved on (another process wrote: the API and the orchestrator take
    turns on most conversations, and so do several API processes), the append writes nothing;
    then only the events after the remembered version are read (`read_stream_after`, one round
    trip, or none: a refused append returns them), the state catches up and the command is
    decided again. A decision that appends
    nothing or refuses is checked the same way before it is answered, since no append checks it.
    None when this process remembers nothing of the conversation (or gave up catching up).
    """
    cache = deps.cache
    cached = cache.get(ctx.tenant_id, conversation_id) if cache is not None else None
    if cache is None or cached is None:
        return None
    stream = model.stream_id(conversation_id)
    history, state = list(cached.history), cached.state
    for _ in range(_ATTEMPTS):
        events, refusal = _decide_or_refusal(state, command)
        newer: list[Recorded] | None = None
        if events:
            appended, newer = await _append_after(
                deps, ctx, stream, events, len(history), along=along
            )
            if appended is not None:
                for event in events:
                    state = model.evolve(state, event)
                cache.put(conversation_id, [*history, *appended], state)
                return history, appended
        if newer is None:
            newer = await deps.store.read_stream_after(stream, len(history))
        if not newer and not events:
            # The remembered stream is current: the no-op or the refusal stands.
            if refusal is not None:
                raise refusal
            return history, []
        history += newer
        for item in newer:
            state = model.evolve(state, item.event)
        cache.put(conversation_id, history, state)
    cache.drop(conversation_id)
    return None


async def _run(
    deps: ConversationDeps,
    ctx: Context,
    conversation_id: uuid.UUID,
    command: model.Command,
    along: NewStream | None = None,
) -> tuple[list[Recorded], list[Recorded]]:
    """Run one command; return the stream as read and the events appended by it.

    `along` is appended in the same transaction when the command appends anything.
    """

    async def attempt() -> tuple[list[Recorded], list[Recorded]]:
        # Read and append in one transaction for its round trips (one BEGIN, one tenant
        # setting, one COMMIT), not for isolation: the append checks the version read anyway.
        async with deps.store.engine.begin() as conn:
            history = await _load(deps.store, ctx.tenant_id, conversation_id, conn)
            state = model.replay([r.event for r in history])
            events = model.decide(state, command)
            if not events:
                return history, []
            try:
                if along is not None:
                    await deps.store.append(
                        along.stream_id,
                        along.events,
                        expected_version=0,
                        metadata=ctx.metadata,
                        conn=conn,
                    )
                appended = await deps.store.append(
                    model.stream_id(conversation_id),
                    events,
                    expected_version=len(history),
                    metadata=ctx.metadata,
                    conn=conn,
                )
            except ConcurrencyError:
                if deps.cache is not None:
                    deps.cache.drop(conversation_id)
                raise
        deps.store.committed()
        if deps.cache is not None:
            for event in events:
                state = model.evolve(state, event)
            deps.cache.put(conversation_id, [*history, *appended], state)
        return history, appended

    try:
        fast = await _append_cached(deps, ctx, conversation_id, command, along)
        return fast if fast is not None else await _with_retry(attempt)
    except model.IllegalTransitionError as exc:
        # In a problem details body `status` is the HTTP status, so the refusal would lose the
        # conversation's status; it is answered as `conversation_status` too.
        exc.extra.setdefault("conversation_status", exc.extra.get("status"))
        raise


async def open_conversation(
    deps: ConversationDeps,
    ctx: Context,
    *,
    channel: str,
    customer_id: str,
    metadata: dict[str, Any] | None = None,
) -> ConversationView:
    """Open a conversation for a customer on a channel; its id is minted here."""
    conversation_id = uuid7()
    command = OpenConversation(
        conversation_id=conversation_id,
        channel=channel,
        customer_id=customer_id,
        metadata=metadata or {},
    )
    state = model.ConversationState()
    events = model.decide(state, command)
    recorded = await deps.store.append_alone(
        model.stream_id(conversation_id), events, expected_version=0, metadata=ctx.metadata
    )
    if deps.cache is not None:
        for event in events:
            state = model.evolve(state, event)
        deps.cache.put(conversation_id, recorded, state)
    return conversation_view(recorded)


async def post_message(
    deps: ConversationDeps,
    ctx: Context,
    conversation_id: uuid.UUID,
    *,
    sender: Sender,
    text: str,
    author_id: str | None = None,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> PostedMessage:
    """Post a message; a repeated `external_id` returns the message stored the first time."""
    command = PostMessage(
        message_id=uuid7(),
        sender=sender,
        text=text,
        author_id=author_id,
        external_id=external_id,
        metadata=metadata or {},
    )
    history, appended = await _run(deps, ctx, conversation_id, command)
    for item in appended:
        if isinstance(item.event, MessagePosted):
            return PostedMessage(message=MessageView.of(item), created=True)
    # Nothing appended for a post means the aggregate recognised the provider's id.
    state = model.replay([r.event for r in history])
    first_id = state.external_ids[external_id] if external_id is not None else None
    for item in history:
        if isinstance(item.event, MessagePosted) and item.event.message_id == first_id:
            return PostedMessage(message=MessageView.of(item), created=False)
    raise AssertionError("a post appended nothing without a known external id")


async def _change(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID, command: model.Command
) -> ConversationView:
    history, appended = await _run(deps, ctx, conversation_id, command)
    return conversation_view([*history, *appended])


async def assign(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID, *, agent_id: str
) -> ConversationView:
    """Give the conversation to a human agent (hands it off too)."""
    return await _change(deps, ctx, conversation_id, AssignConversation(agent_id=agent_id))


async def hand_off(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID, *, reason: str
) -> ConversationView:
    """Send the conversation to the humans; it stays with them until given back."""
    return await _change(deps, ctx, conversation_id, HandOffConversation(reason=reason))


async def return_to_assistant(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID
) -> ConversationView:
    """Let the assistant answer again."""
    return await _change(deps, ctx, conversation_id, ReturnToAssistant())


async def resolve(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID
) -> ConversationView:
    """Mark the customer's matter as settled."""
    return await _change(deps, ctx, conversation_id, ResolveConversation())


async def close(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID
) -> ConversationView:
    """Close the conversation until an explicit reopen."""
    return await _change(deps, ctx, conversation_id, CloseConversation())


async def reopen(
    deps: ConversationDeps, ctx: Context, conversation_id: uuid.UUID, *, reason: str = "reopened"
) -> ConversationView:
    """Make a resolved or closed conversation active again."""
    return await _change(deps, ctx, conversation_id, ReopenConversation(reason=reason))


async def get_conversation(
    deps: ConversationDeps, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationView:
    """Return the conversation as its stream describes it (current right after a command)."""
    return conversation_view(await _load(deps.store, tenant_id, conversation_id))


class History(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's state and messages, oldest first, as of one read of its stream."""

    state: model.ConversationState
    messages: list[MessageView]
    channel: str
    customer_id: str
    version: int


async def load_history(
    deps: ConversationDeps, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> History:
    """Return the conversation's state and every message (what the assistant answers from).

    For the workers' (owner's) store: the read is one statement in autocommit, one round trip
    instead of BEGIN, SELECT, ROLLBACK; a tenant-scoped store would see no tenant set there and
    find nothing.
    """
    cached = deps.cache.get(tenant_id, conversation_id) if deps.cache is not None else None
    if cached is not None:
        # Remembered here: only what was appended since is read (one round trip) and decoded.
        newer = await deps.store.read_stream_after(
            model.stream_id(conversation_id), len(cached.history)
        )
        recorded = [*cached.history, *newer]
    else:
        async with deps.store.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            recorded = await _load(deps.store, tenant_id, conversation_id, auto)
    view = conversation_view(recorded)
    state = model.replay([r.event for r in recorded])
    if deps.cache is not None:
        # The assistant's reply follows this read: from the cache it is one append (checked
        # against this version) instead of a second read of the stream.
        deps.cache.put(conversation_id, recorded, state)
    return History(
        state=state,
        messages=[MessageView.of(r) for r in recorded if isinstance(r.event, MessagePosted)],
        channel=view.channel,
        customer_id=view.customer_id,
        version=len(recorded),
    )


async def deliver_assistant_reply(
    deps: ConversationDeps,
    ctx: Context,
    conversation_id: uuid.UUID,
    reply: DeliverAssistantReply,
    *,
    along: NewStream | None = None,
) -> list[Recorded]:
    """Apply the assistant's outcome (reply, review request or hand-off) as one change.

    Returns the events appended: none when these messages were answered already. `along` (what
    the reply cost) is committed in the same transaction, or on its own when the change appends
    nothing or is refused (the model was paid either way).
    """
    try:
        _, appended = await _run(deps, ctx, conversation_id, reply, along)
    except DomainError:
        await _append_alone(deps, ctx, along)
        raise
    if not appended:
        await _append_alone(deps, ctx, along)
    return appended


async def _append_alone(deps: ConversationDeps, ctx: Context, along: NewStream | None) -> None:
    if along is None or not along.events:
        return
    # A conflict only follows a lost answer to a commit that went through: it is recorded.
    with contextlib.suppress(ConcurrencyError):
        await deps.store.append(
            along.stream_id, along.events, expected_version=0, metadata=ctx.metadata
        )
