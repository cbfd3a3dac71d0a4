"""HTTP routes of the conversations context: open, post, hand over, settle, read one.

Thin on purpose: parse, call a handler, shape the answer. The API assembly authenticates the
caller (the guard puts it on the connection as `scope["auth"]`), provides `conversation_deps`
and enforces the scope declared in `opt`; the correlation id is read from the request's scope
(`kernel.correlation`), so that a handler has one dependency, which Litestar resolves without
a task group. The caller is read by its shape (a
tenant id and an actor) so that this context does not depend on the tenants context.
"""

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from metachat.conversations import handlers
from metachat.conversations.handlers import Context, ConversationDeps
from metachat.conversations.schemas import (
    AgentMessageIn,
    AssignIn,
    AssistantMessageIn,
    ConversationOut,
    CustomerMessageIn,
    HandOffIn,
    MessageOut,
    OpenConversationIn,
)
from metachat.kernel.actors import Actor
from metachat.kernel.correlation import correlation_id_of
from metachat.kernel.errors import AuthenticationError, ValidationError

READ = {"scope": "conversations:read"}
WRITE = {"scope": "conversations:write"}
_SEEN = {200: ResponseSpec(data_container=MessageOut, description="The external id was seen")}
Id = FromPath[uuid.UUID]


def _context(request: Request[Any, Any, Any]) -> Context:
    caller = request.scope.get("auth")
    tenant_id, actor = getattr(caller, "tenant_id", None), getattr(caller, "actor", None)
    if not isinstance(tenant_id, uuid.UUID) or not isinstance(actor, Actor):
        raise AuthenticationError("not authenticated")
    return Context(
        tenant_id=tenant_id, actor=actor, correlation_id=correlation_id_of(request.scope)
    )


def _message(posted: handlers.PostedMessage) -> Response[MessageOut]:
    return Response(MessageOut.of(posted.message), status_code=201 if posted.created else 200)


class ConversationController(Controller):
    """Conversations: the commands of the API channel and the current state of one."""

    path = "/conversations"
    tags = ["conversations"]  # noqa: RUF012 - Litestar's layer attribute

    @post("/", opt=WRITE, status_code=201, summary="Open a conversation")
    async def open_conversation(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[OpenConversationIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Open a conversation for a customer on a channel; the answer carries its `id`."""
        view = await handlers.open_conversation(
            conversation_deps,
            _context(request),
            channel=data.channel,
            customer_id=data.customer_id,
            metadata=data.metadata,
        )
        return ConversationOut.of(view)

    @get("/{conversation_id:uuid}", opt=READ, summary="A conversation's current state")
    async def get_conversation(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Return the conversation from its own stream (current right after a command)."""
        ctx = _context(request)
        view = await handlers.get_conversation(conversation_deps, ctx.tenant_id, conversation_id)
        return ConversationOut.of(view)

    @post(
        "/{conversation_id:uuid}/messages",
        opt=WRITE,
        status_code=201,
        responses=_SEEN,
        summary="Post a customer message",
    )
    async def post_customer_message(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        data: JSONBody[CustomerMessageIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> Response[MessageOut]:
        """Post the customer's message: 201, or 200 with the stored one for a seen external id."""
        posted = await handlers.post_message(
            conversation_deps,
            _context(request),
            conversation_id,
            sender="customer",
            text=data.text,
            external_id=data.external_id,
            metadata=data.metadata,
        )
        return _message(posted)

    @post(
        "/{conversation_id:uuid}/agent-messages",
        opt=WRITE,
        status_code=201,
        responses=_SEEN,
        summary="Post a human agent's message",
    )
    async def post_agent_message(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        data: JSONBody[AgentMessageIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> Response[MessageOut]:
        """Post an agent's message; a user posts as themself, an API key names `author_id`."""
        ctx = _context(request)
        author = ctx.actor.id if ctx.actor.kind == "user" else data.author_id
        if author is None:
            raise ValidationError("author_id is required when an API key posts", field="author_id")
        posted = await handlers.post_message(
            conversation_deps,
            ctx,
            conversation_id,
            sender="agent",
            text=data.text,
            author_id=author,
            external_id=data.external_id,
            metadata=data.metadata,
        )
        return _message(posted)

    @post(
        "/{conversation_id:uuid}/assistant-messages",
        opt=WRITE,
        status_code=201,
        summary="Post the assistant's message",
    )
    async def post_assistant_message(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        data: JSONBody[AssistantMessageIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> MessageOut:
        """Post the assistant's answer; 409 while the humans have the conversation."""
        posted = await handlers.post_message(
            conversation_deps,
            _context(request),
            conversation_id,
            sender="assistant",
            text=data.text,
            metadata=data.metadata,
        )
        return MessageOut.of(posted.message)

    @post("/{conversation_id:uuid}/assign", opt=WRITE, status_code=200, summary="Assign an agent")
    async def assign(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        data: JSONBody[AssignIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Give the conversation to an agent; this hands it to the humans too."""
        ctx = _context(request)
        view = await handlers.assign(
            conversation_deps, ctx, conversation_id, agent_id=data.agent_id
        )
        return ConversationOut.of(view)

    @post("/{conversation_id:uuid}/handoff", opt=WRITE, status_code=200, summary="Hand off")
    async def hand_off(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        data: JSONBody[HandOffIn],
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Send the conversation to the humans; it stays with them until given back."""
        ctx = _context(request)
        view = await handlers.hand_off(conversation_deps, ctx, conversation_id, reason=data.reason)
        return ConversationOut.of(view)

    @post(
        "/{conversation_id:uuid}/return-to-assistant",
        opt=WRITE,
        status_code=200,
        summary="Return to the assistant",
    )
    async def return_to_assistant(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Let the assistant answer again (only from a handed-off conversation)."""
        ctx = _context(request)
        view = await handlers.return_to_assistant(conversation_deps, ctx, conversation_id)
        return ConversationOut.of(view)

    @post("/{conversation_id:uuid}/resolve", opt=WRITE, status_code=200, summary="Resolve")
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Mark the matter settled; a new customer message reopens it to whoever had it."""
        ctx = _context(request)
        view = await handlers.resolve(conversation_deps, ctx, conversation_id)
        return ConversationOut.of(view)

    @post("/{conversation_id:uuid}/close", opt=WRITE, status_code=200, summary="Close")
    async def close(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Close the conversation; only an explicit reopen brings it back."""
        ctx = _context(request)
        view = await handlers.close(conversation_deps, ctx, conversation_id)
        return ConversationOut.of(view)

    @post("/{conversation_id:uuid}/reopen", opt=WRITE, status_code=200, summary="Reopen")
    async def reopen(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Id,
        conversation_deps: NamedDependency[ConversationDeps],
    ) -> ConversationOut:
        """Make a resolved or closed conversation active again, with whoever had it."""
        ctx = _context(request)
        view = await handlers.reopen(conversation_deps, ctx, conversation_id)
        return ConversationOut.of(view)


ROUTES = [ConversationController]
"""Every conversations route, for the API assembly."""
