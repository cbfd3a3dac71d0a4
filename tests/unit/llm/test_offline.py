"""The offline provider and embedder: no key, no network, deterministic."""

import math

from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.offline import OfflineProvider, answer, confidence_level
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    ContextSnippet,
    TextDelta,
    ToolSpec,
)
from metachat.llm.text import word_count

HOURS = ContextSnippet(
    number=1,
    text="Our shop is open Monday to Friday. Opening hours are 9:00 to 17:00 on weekdays.",
    source="faq.md",
)
RETURNS = ContextSnippet(
    number=2,
    text="Refunds are paid within 14 days. Returned items must be unused.",
    source="returns.md",
)
CONTEXT = (HOURS, RETURNS)


def ask(
    question: str, context: tuple[ContextSnippet, ...] = CONTEXT, **kwargs
) -> CompletionRequest:
    messages = (
        ChatMessage(role="system", content="You are the assistant."),
        ChatMessage(role="user", content="Hello"),
        ChatMessage(role="assistant", content="Hi! How can I help?"),
        ChatMessage(role="user", content=question),
    )
    return CompletionRequest(messages=messages, context=context, **kwargs)


class TestAnswersFromContext:
    async def test_quotes_the_best_matching_sentence_cites_it_and_is_confident(self):
        result = await OfflineProvider().complete(ask("What are your opening hours?"))
        assert result.text == (
            "Opening hours are 9:00 to 17:00 on weekdays. [1]\n\n[confidence: high]"
        )
        assert (result.provider, result.model, result.finish_reason) == (
            "offline",
            "offline",
            "stop",
        )

    async def test_answers_the_last_customer_message_from_the_snippet_that_covers_it(self):
        result = await OfflineProvider().complete(ask("When are refunds paid?"))
        assert result.text == "Refunds are paid within 14 days. [2]\n\n[confidence: high]"

    async def test_half_the_question_covered_is_medium(self):
        text = answer("Are refunds instant?", CONTEXT)  # "refund" is there, "instant" is not
        assert text == "Refunds are paid within 14 days. [2]\n\n[confidence: medium]"

    async def test_combines_sentences_when_no_single_one_covers_the_question(self):
        text = answer("Refunds and opening hours?", CONTEXT)
        assert "[1]" in text
        assert "[2]" in text
        assert text.endswith("[confidence: high]")

    async def test_a_weak_overlap_is_low_confidence(self):
        text = answer("Can I pay with bitcoin for returned gadgets?", CONTEXT)
        assert text.endswith("[confidence: low]")

    def test_levels_follow_the_share_of_the_question_covered(self):
        assert [confidence_level(c) for c in (1.0, 0.75, 0.5, 0.2, 0.0)] == [
            "high",
            "high",
            "medium",
            "low",
            "very low",
        ]

    async def test_the_same_request_always_gets_the_same_answer(self):
        provider = OfflineProvider()
        first = await provider.complete(ask("opening hours"))
        second = await provider.complete(ask("opening hours"))
        assert first.text == second.text


class TestSaysItDoesNotKnow:
    async def test_without_context_it_says_so_and_is_very_low(self):
        result = await OfflineProvider().complete(ask("What are your opening hours?", ()))
        assert result.text.startswith("I don't know")
        assert result.text.endswith("[confidence: very low]")

    async def test_when_nothing_in_the_context_matches_it_says_so_and_is_very_low(self):
        result = await OfflineProvider().complete(ask("Do you sell bicycles?"))
        assert result.text.startswith("I don't know")
        assert result.text.endswith("[confidence: very low]")

    async def test_a_question_of_only_stop_words_is_very_low(self):
        assert answer("what is it?", CONTEXT).endswith("[confidence: very low]")


class TestNeverCallsTools:
    async def test_offered_tools_are_not_called(self):
        tool = ToolSpec(name="lookup_order", description="Find an order")
        result = await OfflineProvider().complete(ask("opening hours", tools=(tool,)))
        assert result.tool_calls == ()


class TestUsage:
    async def test_tokens_are_counted_as_words(self):
        request = ask("opening hours?", (ContextSnippet(number=1, text="Open 9 to 5."),))
        result = await OfflineProvider().complete(request)
        prompt_words = 4 + 1 + 5 + 2 + 4  # the four messages, then the snippet
        assert result.usage.input_tokens == prompt_words
        assert result.usage.output_tokens == word_count(result.text)


class TestStreaming:
    async def test_streams_the_answer_word_by_word_then_the_completion(self):
        items = [item async for item in OfflineProvider().stream(ask("opening hours?"))]
        deltas = [item for item in items if isinstance(item, TextDelta)]
        final = items[-1]
        assert isinstance(final, Completion)
        assert len(deltas) == len(final.text.split())
        assert "".join(d.text for d in deltas) == final.text


class TestOfflineEmbedder:
    async def test_vectors_are_deterministic_unit_length_and_of_the_configured_size(self):
        embedder = OfflineEmbedder()
        first, again = await embedder.embed(["Opening hours", "Opening hours"])
        assert first == again
        assert len(first) == 384
        assert math.isclose(math.fsum(x * x for x in first), 1.0)

    async def test_a_fresh_embedder_gives_the_same_vector(self):
        # blake2b, not the salted builtin hash: stable across processes.
        assert OfflineEmbedder().vector("refund policy") == OfflineEmbedder().vector(
            "refund policy"
        )

    async def test_texts_sharing_words_are_closer_than_unrelated_ones(self):
        embedder = OfflineEmbedder(dimensions=256)
        query, near, far = (
            embedder.vector(t)
            for t in ("refund policy", "our refund policies", "shipping to Canada")
        )

        def cosine(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))

        assert cosine(query, near) > 0.9
        assert cosine(query, far) < cosine(query, near)

    async def test_a_text_without_words_is_still_a_unit_vector(self):
        vector = OfflineEmbedder(dimensions=8).vector("?!")
        assert vector == [1.0, 0, 0, 0, 0, 0, 0, 0]

    async def test_the_provider_embeds_with_the_offline_embedder(self):
        assert await OfflineProvider().embed(["hours"]) == await OfflineEmbedder().embed(["hours"])
