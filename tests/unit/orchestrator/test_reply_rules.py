"""The reply policy's pure rules: what is unanswered, the prompt's budget, the URL guard."""

import uuid
from datetime import UTC, datetime

import pytest

from metachat.conversations import History, MessageView
from metachat.conversations.model import ConversationState
from metachat.orchestrator.models import UrlRefusedError, public_url_guard
from metachat.orchestrator.prompt import build_messages, estimate_tokens
from metachat.orchestrator.replies import unanswered
from metachat.tenants.commands import AssistantSettings

CID = uuid.uuid4()


def message(sender: str, text: str = "hi", **metadata: object) -> MessageView:
    return MessageView(
        message_id=uuid.uuid4(),
        conversation_id=CID,
        sender=sender,  # type: ignore[arg-type]
        author_id=None,
        text=text,
        external_id=None,
        metadata=dict(metadata),
        created_at=datetime.now(UTC),
    )


def history(*messages: MessageView) -> History:
    return History(
        state=ConversationState(conversation_id=CID),
        messages=list(messages),
        channel="api",
        customer_id="c",
        version=len(messages) + 1,
    )


class TestUnanswered:
    def test_a_reply_answers_the_messages_it_names_not_those_that_came_meanwhile(self) -> None:
        first, meanwhile = message("customer"), message("customer")
        reply = message("assistant", in_reply_to=[str(first.message_id)])
        assert unanswered(history(first, meanwhile, reply)) == [meanwhile]

    def test_a_person_answers_everything_before_them(self) -> None:
        later = message("customer")
        assert unanswered(history(message("customer"), message("agent"), later)) == [later]

    def test_a_burst_is_unanswered_together(self) -> None:
        burst = [message("customer") for _ in range(3)]
        assert unanswered(history(*burst)) == burst


class TestPrompt:
    def test_keeps_the_newest_history_within_the_budget_and_always_the_pending(self) -> None:
        old = [message("customer", "x" * 400), message("assistant", "y" * 400)]
        pending = [message("customer", "z" * 4000)]  # alone over the budget: still kept
        settings = AssistantSettings(history_token_budget=150)
        built = build_messages(
            settings,
            tenant_name="Acme",
            history=[*old, *pending],
            answering=1,
            context=[],
            confidence_instructions="",
        )
        assert [m.role for m in built] == ["system", "user"]
        assert built[-1].content == "z" * 4000
        assert estimate_tokens("abcd") == 2

    def test_the_system_prompt_carries_brand_tone_language_and_numbered_sources(self) -> None:
        from metachat.llm import ContextSnippet

        settings = AssistantSettings(brand_name="Acme Bikes", tone="warm", language="German")
        snippet = ContextSnippet(number=1, text="Open 9-6.", source="hours.md")
        (system, _) = build_messages(
            settings,
            tenant_name="ignored",
            history=[message("customer")],
            answering=1,
            context=[snippet],
            confidence_instructions="End with [confidence: ...].",
        )
        for part in (
            "Acme Bikes",
            "warm",
            "German",
            "[1] Open 9-6. (source: hours.md)",
            "End with",
        ):
            assert part in system.content


class TestUrlGuard:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:11434/v1",
            "http://0x7f000001/v1",
            "http://[::1]/v1",
            "http://[::ffff:127.0.0.1]/v1",
            "http://169.254.169.254/latest",
            "http://10.0.0.5/v1",
            "http://100.64.0.1/v1",
            "http://localhost/v1",
        ],
    )
    def test_internal_addresses_are_refused(self, url: str) -> None:
        with pytest.raises(UrlRefusedError):
            public_url_guard(())(url)

    def test_an_allowed_host_passes(self) -> None:
        public_url_guard(("localhost",))("http://localhost:11434/v1")

    def test_a_public_address_passes(self) -> None:
        public_url_guard(())("https://93.184.215.14/v1")
