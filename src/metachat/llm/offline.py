"""The offline default: answers from the retrieved context with no key, no network, no model.

It is extractive, not generative: it quotes the context sentences that share the most words
with the customer's question, cites them `[n]`, and ends with a self-assessment marker
`[confidence: high|medium|low|very low]` from how much of the question they cover. With no
context or no overlap it says plainly that it does not know and marks `very low`, so the
orchestrator hands the conversation to a human. It never calls tools. Deterministic: the same
request always gets the same answer. Words are English-oriented (the stop-word list).
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence

from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.ports import (
    Completion,
    CompletionRequest,
    ContextSnippet,
    StreamItem,
    TextDelta,
    Usage,
)
from metachat.llm.text import content_terms, word_count

OFFLINE_MODEL = "offline"
MAX_SENTENCES = 3
NO_CONTEXT_ANSWER = "I don't know the answer to that: I have no information about it."
NO_MATCH_ANSWER = "I don't know the answer to that: the information I have does not cover it."
_WORDS_PER_TURN = 16
"""Words streamed between two yields to the event loop: a yield per word cost a turn of the loop
(and a poll for I/O) per word of every reply, in a process answering many at once."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
HIGH_COVERAGE = 0.75
MEDIUM_COVERAGE = 0.5
"""Share of the question's words that the quoted sentences contain, for `high` and `medium`;
any smaller overlap is `low`, none at all is `very low`."""


class _Sentence:
    def __init__(self, *, text: str, number: int, terms: frozenset[str]) -> None:
        self.text = text
        self.number = number
        self.terms = terms


class OfflineProvider:
    """An extractive answerer over `request.context`, and the offline embedder."""

    def __init__(self, *, name: str = "offline", embedder: OfflineEmbedder | None = None) -> None:
        self.name = name
        self._embedder = embedder or OfflineEmbedder()

    async def complete(self, request: CompletionRequest) -> Completion:
        """The answer, all at once."""
        started = time.perf_counter()
        text = answer(_question(request), request.context)
        prompt_words = sum(word_count(m.content) for m in request.messages) + sum(
            word_count(s.text) for s in request.context
        )
        return Completion(
            text=text,
            usage=Usage(input_tokens=prompt_words, output_tokens=word_count(text)),
            model=request.model or OFFLINE_MODEL,
            provider=self.name,
            finish_reason="stop",
            latency_ms=round((time.perf_counter() - started) * 1000),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """The same answer, word by word, then the `Completion`."""
        completion = await self.complete(request)
        for number, word in enumerate(re.findall(r"\S+\s*", completion.text), start=1):
            yield TextDelta(text=word)
            if number % _WORDS_PER_TURN == 0:
                await asyncio.sleep(0)  # let other tasks run now and then, as a network would
        yield completion

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Lexical feature-hashing vectors (see `OfflineEmbedder`)."""
        return await self._embedder.embed(texts)


def answer(question: str, context: Sequence[ContextSnippet]) -> str:
    """The extractive answer to `question` from `context`, ending with its confidence marker."""
    asked = content_terms(question)
    if not context or not asked:
        return _with_marker(NO_CONTEXT_ANSWER if not context else NO_MATCH_ANSWER, "very low")
    chosen = _cover(asked, _sentences(context))
    if not chosen:
        return _with_marker(NO_MATCH_ANSWER, "very low")
    covered = frozenset().union(*(s.terms for s in chosen)) & asked
    body = " ".join(f"{_ending(s.text)} [{s.number}]" for s in chosen)
    return _with_marker(body, confidence_level(len(covered) / len(asked)))


def confidence_level(coverage: float) -> str:
    """The self-assessed level for the share of the question's words the answer covers."""
    if coverage >= HIGH_COVERAGE:
        return "high"
    if coverage >= MEDIUM_COVERAGE:
        return "medium"
    return "low" if coverage > 0 else "very low"


def _question(request: CompletionRequest) -> str:
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


def _sentences(context: Sequence[ContextSnippet]) -> list[_Sentence]:
    return [
        _Sentence(text=part.strip(), number=snippet.number, terms=content_terms(part))
        for snippet in context
        for part in _SENTENCE_END.split(snippet.text)
        if part.strip()
    ]


def _cover(asked: frozenset[str], sentences: list[_Sentence]) -> list[_Sentence]:
    """Greedy cover: each next sentence adds the most question words not yet covered.

    Ties go to the earlier sentence (retrieval order), so the answer is deterministic.
    """
    chosen: list[_Sentence] = []
    missing = set(asked)
    while missing and len(chosen) < MAX_SENTENCES:
        best = max(sentences, key=lambda s: len(s.terms & missing), default=None)
        if best is None or not best.terms & missing:
            break
        chosen.append(best)
        missing -= best.terms
        sentences = [s for s in sentences if s is not best]
    return chosen


def _ending(sentence: str) -> str:
    return sentence if sentence[-1] in ".!?" else f"{sentence}."


def _with_marker(text: str, level: str) -> str:
    return f"{text}\n\n[confidence: {level}]"
