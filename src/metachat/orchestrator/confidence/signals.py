"""The four signals, each a score in [0, 1] where 1 means "safe to send as it is".

Self-assessment reads the raw answer (it is the marker); the others read the answer without it.
"""

import re
from collections.abc import Sequence
from typing import Literal

import msgspec

from metachat.orchestrator.confidence import phrases
from metachat.orchestrator.confidence.markers import self_assessed

SignalName = Literal["self_assessment", "hedging", "answer_quality", "consistency"]
WEIGHTS: dict[SignalName, float] = {
    "self_assessment": 0.5,
    "hedging": 0.25,
    "answer_quality": 0.15,
    "consistency": 0.1,
}

_HEDGES = {
    group: phrases.compile_phrases(group_phrases) for group, group_phrases in phrases.HEDGES.items()
}
_ANY_HEDGE = phrases.compile_phrases(p for group in phrases.HEDGES.values() for p in group)
_CONFIDENT = phrases.compile_phrases(phrases.CONFIDENT_PHRASES)
_DEFLECTION = phrases.compile_phrases(phrases.DEFLECTIONS)
_DODGE = phrases.compile_phrases(phrases.DODGES)
_VAGUE = phrases.compile_phrases(phrases.VAGUE_WORDS)
_DATES = phrases.compile_phrases(phrases.MONTHS + phrases.WEEKDAYS, plurals=True)
_NUMBER = re.compile(r"[0-9]+(?:[.,:/][0-9]+)*")
_WORD = re.compile(r"\w+(?:'\w+)*")

SHORT_QUESTION_WORDS = 10
SHORT_ANSWER_WORDS = 15
LONG_ANSWER_WORDS = 500


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of evidence about an answer: its score in [0, 1], its weight, and why."""

    name: SignalName
    score: float
    weight: float
    reason: str


def _signal(name: SignalName, score: float, reason: str) -> Signal:
    return Signal(name=name, score=min(1.0, max(0.0, score)), weight=WEIGHTS[name], reason=reason)


def _count(pattern: re.Pattern[str] | None, text: str) -> int:
    return 0 if pattern is None else sum(1 for _ in pattern.finditer(text))


def words(text: str) -> list[str]:
    """Return the words of `text`, lower-cased ("don't" is one word)."""
    return [w.lower() for w in _WORD.findall(phrases.normalise(text))]


def substance(text: str) -> str:
    """Return `text` without its hedge phrases: what is left is what the answer actually says."""
    text = phrases.normalise(text)
    return text if _ANY_HEDGE is None else _ANY_HEDGE.sub(" ", text)


def self_assessment(answer: str) -> Signal | None:
    """The model's own rating, from its marker; None when it gave none."""
    found = self_assessed(answer)
    if found is None:
        return None
    said, score = found
    return _signal("self_assessment", score, f"the model rated itself {said!r}")


def hedging(text: str) -> Signal:
    """1 - severity, severity = max(0, min(hedges/3, 1) - 0.5 * min(confident phrases/2, 1))."""
    text = phrases.normalise(text)
    per_group = {group: _count(pattern, text) for group, pattern in _HEDGES.items()}
    hedges, confident = sum(per_group.values()), _count(_CONFIDENT, text)
    severity = max(0.0, min(hedges / 3, 1.0) - 0.5 * min(confident / 2, 1.0))
    found = ", ".join(f"{group} x{n}" for group, n in per_group.items() if n) or "none"
    return _signal("hedging", 1.0 - severity, f"hedges: {found}; confident phrases: {confident}")


def answer_quality(question: str, text: str) -> Signal:
    """The mean of the length, completeness and specificity scores of the answer."""
    length = _length(question, text)
    completeness = _completeness(question, text)
    specificity = _specificity(text)
    reason = f"length {length}, completeness {completeness}, specificity {specificity:.2f}"
    return _signal("answer_quality", (length + completeness + specificity) / 3, reason)


def _length(question: str, text: str) -> float:
    # Hedge phrases are not content: "I'm not sure, perhaps, maybe" is not a long answer.
    said = len(words(substance(text)))
    if said == 0:
        return 0.1
    if len(words(question)) > SHORT_QUESTION_WORDS and said < SHORT_ANSWER_WORDS:
        return 0.3
    return 0.6 if said > LONG_ANSWER_WORDS else 0.9


def _completeness(question: str, text: str) -> float:
    text = phrases.normalise(text)
    if _count(_DEFLECTION, text):
        return 0.2
    return 0.5 if "?" in question and _count(_DODGE, text) else 0.8


def _specificity(text: str) -> float:
    specifics = len(_NUMBER.findall(text)) + _count(_DATES, text)
    return min(1.0, max(0.2, 0.5 + 0.2 * specifics - 0.1 * _count(_VAGUE, text)))


def consistency(
    text: str, *, self_score: float | None, hedging_score: float, context: Sequence[str]
) -> Signal | None:
    """Whether the evidence agrees, or None when nothing can be compared.

    Two checks, averaged over those that apply: the self-assessment against the hedging
    (1 - |self - hedging|; a model that claims "high" while hedging, or "low" while sounding
    sure, is inconsistent), and grounding: the share of the answer's content words found in
    the retrieved context, when context was given.
    """
    checks: list[tuple[float, str]] = []
    if self_score is not None:
        agreement = 1.0 - abs(self_score - hedging_score)
        checks.append((agreement, f"self-assessment and hedging agree {agreement:.2f}"))
    grounding = _grounding(text, context)
    if grounding is not None:
        checks.append(grounding)
    if not checks:
        return None
    score = sum(score for score, _ in checks) / len(checks)
    return _signal("consistency", score, "; ".join(reason for _, reason in checks))


def _grounding(text: str, context: Sequence[str]) -> tuple[float, str] | None:
    known = {word for passage in context for word in words(passage)}
    said = {word for word in words(substance(text)) if word not in phrases.STOPWORDS}
    if not known or not said:
        return None
    found = len(said & known)
    return found / len(said), f"{found}/{len(said)} content words found in the context"
