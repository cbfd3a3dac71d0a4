"""The conversation aggregate: pure decide/evolve with exact, sticky handoff rules.

Statuses: `open` (the assistant answers), `assigned_human` (the humans have it, with or
without an agent assigned), `resolved`, `closed`. Once handed off, a conversation stays with
the humans until a human gives it back (`ReturnToAssistant`): a customer message never hands
it back to the assistant, and a customer message on a resolved conversation reopens it to
whoever had it (the earlier system's worst handoff bug was doing the opposite). `closed` is
left only by an explicit reopen. Every refusal is an `IllegalTransitionError` carrying the
current status, answered as 409.
"""

import uuid
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from metachat.conversations.commands import (
    MAX_TEXT,
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
from metachat.conversations.events import (
    ConversationAssigned,
    ConversationClosed,
    ConversationHandedOff,
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    ConversationReturnedToAssistant,
    ConversationReviewRequested,
    MessagePosted,
)
from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ConflictError, NotFoundError, ValidationError

Status = Literal["open", "assigned_human", "resolved", "closed"]
Command = (
    OpenConversation
    | PostMessage
    | AssignConversation
    | HandOffConversation
    | ReturnToAssistant
    | ResolveConversation
    | CloseConversation
    | ReopenConversation
    | DeliverAssistantReply
)
MAX_FIELD = 200


class IllegalTransitionError(ConflictError):
    """The command is not allowed in the conversation's current state."""

    code = "illegal_transition"
    title = "Not allowed in the conversation's current state"


class ConversationState(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation as its events describe it."""

    conversation_id: uuid.UUID | None = None
    status: Status = "open"
    handed_off: bool = False
    assignee: str | None = None
    external_ids: dict[str, uuid.UUID] = msgspec.field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """True once the conversation has been opened."""
        return self.conversation_id is not None

    @property
    def assistant_may_answer(self) -> bool:
        """The assistant answers open conversations that are not with the humans."""
        return self.status == "open" and not self.handed_off


def stream_id(conversation_id: uuid.UUID) -> str:
    """The stream holding one conversation's events."""
    return f"conversation-{conversation_id}"


def _refuse(state: ConversationState, action: str) -> IllegalTransitionError:
    return IllegalTransitionError(
        f"cannot {action} a conversation that is {state.status}",
        status=state.status,
        handed_off=state.handed_off,
        assignee=state.assignee,
    )


def _short(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_FIELD:
        raise ValidationError(f"{field} must be 1 to {MAX_FIELD} characters", field=field)
    return cleaned


def decide(state: ConversationState, command: Command) -> list[Event]:
    """Return the events a command produces from this state, or raise why it cannot."""
    if isinstance(command, OpenConversation):
        if state.exists:
            raise ConflictError("conversation already exists", status=state.status)
        return [
            ConversationOpened(
                conversation_id=command.conversation_id,
                channel=_short(command.channel, "channel"),
                customer_id=_short(command.customer_id, "customer_id"),
                metadata=command.metadata,
            )
        ]
    if not state.exists or state.conversation_id is None:
        raise NotFoundError("conversation not found")
    return _DECIDERS[type(command)](state, state.conversation_id, command)


def _post(state: ConversationState, cid: uuid.UUID, command: Any) -> list[Event]:
    if command.external_id is not None and command.external_id in state.external_ids:
        return []  # the provider retried: stored once (the handler answers with the first one)
    text = command.text.strip()
    if not text or len(command.text) > MAX_TEXT:
        raise ValidationError(f"text must be 1 to {MAX_TEXT} characters", field="text")
    events: list[Event] = []
    if command.sender == "customer":
        if state.status == "closed":
            raise _refuse(state, "post a customer message to")
        if state.status == "resolved":
            events.append(ConversationReopened(conversation_id=cid, reason="customer_message"))
    elif command.sender == "agent":
        if state.status in ("resolved", "closed"):
            raise _refuse(state, "post an agent message to")
    elif not state.assistant_may_answer:
        raise _refuse(state, "post an assistant message to")
    events.append(
        MessagePosted(
            conversation_id=cid,
            message_id=command.message_id,
            sender=command.sender,
            author_id=command.author_id,
            text=command.text,
            external_id=command.external_id,
            metadata=command.metadata,
        )
    )
    return events


def _assign(state: ConversationState, cid: uuid.UUID, command: Any) -> list[Event]:
    if state.status not in ("open", "assigned_human"):
        raise _refuse(state, "assign")
    agent = _short(command.agent_id, "agent_id")
    if agent == state.assignee:
        return []
    return [ConversationAssigned(conversation_id=cid, agent_id=agent)]


def _hand_off(state: ConversationState, cid: uuid.UUID, command: Any) -> list[Event]:
    if state.status not in ("open", "assigned_human"):
        raise _refuse(state, "hand off")
    if state.handed_off:
        return []  # already with the humans: a second request changes nothing
    return [ConversationHandedOff(conversation_id=cid, reason=_short(command.reason, "reason"))]


def _return(state: ConversationState, cid: uuid.UUID, _: Any) -> list[Event]:
    if state.status != "assigned_human" or not state.handed_off:
        raise _refuse(state, "return to the assistant")
    return [ConversationReturnedToAssistant(conversation_id=cid)]


def _resolve(state: ConversationState, cid: uuid.UUID, _: Any) -> list[Event]:
    if state.status not in ("open", "assigned_human"):
        raise _refuse(state, "resolve")
    return [ConversationResolved(conversation_id=cid)]


def _close(state: ConversationState, cid: uuid.UUID, _: Any) -> list[Event]:
    if state.status == "closed":
        raise _refuse(state, "close")
    return [ConversationClosed(conversation_id=cid)]


def _reopen(state: ConversationState, cid: uuid.UUID, command: Any) -> list[Event]:
    if state.status not in ("resolved", "closed"):
        raise _refuse(state, "reopen")
    return [ConversationReopened(conversation_id=cid, reason=_short(command.reason, "reason"))]


def _deliver(state: ConversationState, cid: uuid.UUID, command: Any) -> list[Event]:
    reply: DeliverAssistantReply = command
    if not reply.in_reply_to:
        raise ValidationError("a reply answers at least one message", field="in_reply_to")
    post = PostMessage(
        message_id=reply.message_id,
        sender="assistant",
        text=reply.text,
        external_id=reply.external_id,
        metadata={
            "in_reply_to": [str(m) for m in reply.in_reply_to],
            "action": reply.action,
            "reason": reply.reason,
            "details": reply.details,
        },
    )
    posted = _post(state, cid, post)  # refuses once the humans have it
    if not posted:
        return []  # this message was answered already: the replay changes nothing
    if reply.action == "hand_off":
        return [
            *posted,
            ConversationHandedOff(conversation_id=cid, reason=reply.reason, details=reply.details),
        ]
    if reply.action == "send_and_review":
        review = ConversationReviewRequested(
            conversation_id=cid,
            message_id=reply.message_id,
            reason=reply.reason,
            details=reply.details,
        )
        return [*posted, review]
    return posted


_DECIDERS: dict[type, Callable[[ConversationState, uuid.UUID, Any], list[Event]]] = {
    PostMessage: _post,
    AssignConversation: _assign,
    HandOffConversation: _hand_off,
    ReturnToAssistant: _return,
    ResolveConversation: _resolve,
    CloseConversation: _close,
    ReopenConversation: _reopen,
    DeliverAssistantReply: _deliver,
}


def _active_status(state: ConversationState) -> Status:
    return "assigned_human" if state.handed_off else "open"


def evolve(state: ConversationState, event: Event) -> ConversationState:  # noqa: PLR0911 - one branch per event
    """Apply one event to the state."""
    replace = msgspec.structs.replace
    if isinstance(event, ConversationOpened):
        return ConversationState(conversation_id=event.conversation_id)
    if isinstance(event, MessagePosted):
        if event.external_id is None:
            return state
        return replace(
            state, external_ids={**state.external_ids, event.external_id: event.message_id}
        )
    if isinstance(event, ConversationAssigned):
        return replace(state, status="assigned_human", handed_off=True, assignee=event.agent_id)
    if isinstance(event, ConversationHandedOff):
        return replace(state, status="assigned_human", handed_off=True)
    if isinstance(event, ConversationReturnedToAssistant):
        return replace(state, status="open", handed_off=False, assignee=None)
    if isinstance(event, ConversationResolved):
        return replace(state, status="resolved")
    if isinstance(event, ConversationClosed):
        return replace(state, status="closed")
    if isinstance(event, ConversationReopened):
        return replace(state, status=_active_status(state))
    return state


def replay(events: list[Event]) -> ConversationState:
    """Fold events into the state they describe."""
    state = ConversationState()
    for event in events:
        state = evolve(state, event)
    return state
