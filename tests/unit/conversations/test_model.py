"""Conversation aggregate: every command from every state, legal and illegal."""

import uuid
from collections.abc import Callable

import pytest

from metachat.conversations import model
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
    Sender,
)
from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ConflictError, NotFoundError, ValidationError

CID = uuid.UUID(int=7)
OPENED = ConversationOpened(conversation_id=CID, channel="api", customer_id="c-1")
HANDED = ConversationHandedOff(conversation_id=CID, reason="asked for a human")
ASSIGNED = ConversationAssigned(conversation_id=CID, agent_id="agent-1")
RESOLVED = ConversationResolved(conversation_id=CID)
CLOSED = ConversationClosed(conversation_id=CID)
RETURNED = ConversationReturnedToAssistant(conversation_id=CID)

HISTORIES: dict[str, list[Event]] = {
    "open": [OPENED],
    "open_given_back": [OPENED, HANDED, RETURNED],
    "handed_off": [OPENED, HANDED],
    "assigned": [OPENED, ASSIGNED],
    "resolved": [OPENED, RESOLVED],
    "resolved_after_handoff": [OPENED, HANDED, RESOLVED],
    "closed": [OPENED, CLOSED],
    "closed_after_handoff": [OPENED, HANDED, CLOSED],
}


def post(sender: Sender, external_id: str | None = None) -> PostMessage:
    return PostMessage(
        message_id=uuid.uuid4(), sender=sender, text="hello", external_id=external_id
    )


def reply(action: str, answered: uuid.UUID | None = None) -> DeliverAssistantReply:
    return DeliverAssistantReply(
        message_id=uuid.uuid4(),
        text="an answer",
        in_reply_to=(answered or uuid.uuid4(),),
        action=action,  # type: ignore[arg-type]
        reason="confident" if action == "send" else "low_confidence",
        details={"score": 0.5},
    )


COMMANDS: dict[str, Callable[[], model.Command]] = {
    "customer": lambda: post("customer"),
    "agent": lambda: post("agent"),
    "assistant": lambda: post("assistant"),
    "reply": lambda: reply("send"),
    "reply_review": lambda: reply("send_and_review"),
    "reply_handoff": lambda: reply("hand_off"),
    "assign": lambda: AssignConversation(agent_id="agent-2"),
    "hand_off": lambda: HandOffConversation(reason="low confidence"),
    "return": ReturnToAssistant,
    "resolve": ResolveConversation,
    "close": CloseConversation,
    "reopen": ReopenConversation,
}

X = None  # illegal: 409 with the current status
M, R = MessagePosted, ConversationReopened
REVIEW: list[type] = [M, ConversationReviewRequested]
HANDOFF: list[type] = [M, ConversationHandedOff]
# Expected event types per (state, command); X marks an illegal transition.
TABLE: dict[str, dict[str, list[type] | None]] = {
    "open":                   {"customer": [M], "agent": [M], "assistant": [M], "reply": [M], "reply_review": REVIEW, "reply_handoff": HANDOFF, "assign": [ConversationAssigned], "hand_off": [ConversationHandedOff], "return": X, "resolve": [ConversationResolved], "close": [ConversationClosed], "reopen": X},
    "open_given_back":        {"customer": [M], "agent": [M], "assistant": [M], "reply": [M], "reply_review": REVIEW, "reply_handoff": HANDOFF, "assign": [ConversationAssigned], "hand_off": [ConversationHandedOff], "return": X, "resolve": [ConversationResolved], "close": [ConversationClosed], "reopen": X},
    "handed_off":             {"customer": [M], "agent": [M], "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": [ConversationAssigned], "hand_off": [], "return": [ConversationReturnedToAssistant], "resolve": [ConversationResolved], "close": [ConversationClosed], "reopen": X},
    "assigned":               {"customer": [M], "agent": [M], "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": [ConversationAssigned], "hand_off": [], "return": [ConversationReturnedToAssistant], "resolve": [ConversationResolved], "close": [ConversationClosed], "reopen": X},
    "resolved":               {"customer": [R, M], "agent": X, "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": X, "hand_off": X, "return": X, "resolve": X, "close": [ConversationClosed], "reopen": [R]},
    "resolved_after_handoff": {"customer": [R, M], "agent": X, "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": X, "hand_off": X, "return": X, "resolve": X, "close": [ConversationClosed], "reopen": [R]},
    "closed":                 {"customer": X, "agent": X, "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": X, "hand_off": X, "return": X, "resolve": X, "close": X, "reopen": [R]},
    "closed_after_handoff":   {"customer": X, "agent": X, "assistant": X, "reply": X, "reply_review": X, "reply_handoff": X, "assign": X, "hand_off": X, "return": X, "resolve": X, "close": X, "reopen": [R]},
}  # fmt: skip

CASES = [(state, command) for state in TABLE for command in TABLE[state]]


@pytest.mark.parametrize(("state_name", "command_name"), CASES)
def test_transition(state_name: str, command_name: str) -> None:
    state = model.replay(HISTORIES[state_name])
    expected = TABLE[state_name][command_name]
    command = COMMANDS[command_name]()
    if expected is None:
        with pytest.raises(model.IllegalTransitionError) as refused:
            model.decide(state, command)
        assert refused.value.status == 409
        assert refused.value.extra["status"] == state.status
    else:
        assert [type(e) for e in model.decide(state, command)] == expected


def test_table_covers_every_state_and_command() -> None:
    assert set(TABLE) == set(HISTORIES)
    assert all(set(row) == set(COMMANDS) for row in TABLE.values())
    opened = {OpenConversation}  # from no state at all: TestOpen
    assert {type(make()) for make in COMMANDS.values()} | opened == set(model.Command.__args__)


class TestAssistantReply:
    def test_a_replayed_message_gets_no_second_reply(self) -> None:
        answered = uuid.uuid4()
        first = model.decide(model.replay([OPENED]), reply("send", answered))
        state = model.replay([OPENED, *first])
        assert model.decide(state, reply("send", answered)) == []
        assert model.decide(state, reply("hand_off", answered)) == []

    def test_the_decision_is_recorded_on_the_reply_and_the_handoff(self) -> None:
        events = model.decide(model.replay([OPENED]), reply("hand_off"))
        posted, handed = events
        assert isinstance(posted, MessagePosted)
        assert isinstance(handed, ConversationHandedOff)
        assert posted.metadata["action"] == "hand_off"
        assert posted.metadata["details"] == handed.details == {"score": 0.5}
        assert model.replay([OPENED, *events]).handed_off

    def test_a_reply_answers_at_least_one_message(self) -> None:
        empty = DeliverAssistantReply(
            message_id=uuid.uuid4(), text="x", in_reply_to=(), action="send", reason="r"
        )
        with pytest.raises(ValidationError):
            model.decide(model.replay([OPENED]), empty)


class TestStickyHandoff:
    def test_a_customer_message_keeps_a_handed_off_conversation_with_the_humans(self) -> None:
        state = model.replay([OPENED, HANDED])
        events = model.decide(state, post("customer"))
        after = model.replay([OPENED, HANDED, *events])
        assert after.status == "assigned_human"
        assert not after.assistant_may_answer

    def test_a_customer_message_reopens_a_resolved_handed_off_conversation_to_the_humans(
        self,
    ) -> None:
        history = [OPENED, HANDED, RESOLVED]
        events = model.decide(model.replay(history), post("customer"))
        after = model.replay([*history, *events])
        assert after.status == "assigned_human"
        assert not after.assistant_may_answer

    def test_only_a_human_gives_it_back(self) -> None:
        after = model.replay([OPENED, HANDED, RETURNED])
        assert after.status == "open"
        assert after.assistant_may_answer


class TestProviderIds:
    def test_the_same_provider_id_is_stored_once(self) -> None:
        first = post("customer", external_id="wamid.1")
        [event] = model.decide(model.replay([OPENED]), first)
        state = model.replay([OPENED, event])
        assert model.decide(state, post("customer", external_id="wamid.1")) == []
        assert state.external_ids["wamid.1"] == first.message_id

    def test_a_different_provider_id_is_a_new_message(self) -> None:
        state = model.replay([OPENED, *model.decide(model.replay([OPENED]), post("customer", "a"))])
        assert len(model.decide(state, post("customer", "b"))) == 1


class TestOpen:
    def test_opens(self) -> None:
        command = OpenConversation(
            conversation_id=CID, channel="api", customer_id="c-1", metadata={"k": 1}
        )
        assert model.decide(model.ConversationState(), command) == [
            ConversationOpened(
                conversation_id=CID, channel="api", customer_id="c-1", metadata={"k": 1}
            )
        ]

    def test_rejects_a_second_open(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(
                model.replay([OPENED]),
                OpenConversation(conversation_id=CID, channel="api", customer_id="x"),
            )

    def test_commands_on_a_missing_conversation_are_not_found(self) -> None:
        with pytest.raises(NotFoundError):
            model.decide(model.ConversationState(), ResolveConversation())

    @pytest.mark.parametrize("text", ["", "   ", "x" * 10_001])
    def test_rejects_empty_or_huge_text(self, text: str) -> None:
        with pytest.raises(ValidationError):
            model.decide(
                model.replay([OPENED]),
                PostMessage(message_id=uuid.uuid4(), sender="customer", text=text),
            )
