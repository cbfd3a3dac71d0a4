"""From a question and an answer to an assessment: a score, a level, a domain, the signals."""

from collections.abc import Sequence
from typing import Literal

import msgspec

from metachat.orchestrator.confidence import questions
from metachat.orchestrator.confidence.markers import strip_marker
from metachat.orchestrator.confidence.presets import ConfidenceSettings, Domain, review_threshold
from metachat.orchestrator.confidence.signals import (
    Signal,
    answer_quality,
    consistency,
    hedging,
    self_assessment,
)

Level = Literal["high", "medium", "low", "very_low"]
# The score of an answer with no signal at all (an empty answer without a marker): the midpoint,
# since there is no evidence either way. Its level is "low". `decide` hands an empty answer to a
# human whatever its score, so the neutral score is only ever seen in the record.
NEUTRAL_SCORE = 0.5
_LEVELS: tuple[tuple[float, Level], ...] = ((0.8, "high"), (0.6, "medium"), (0.4, "low"))


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    """How far an answer can be trusted, and the evidence for it."""

    score: float
    level: Level
    domain: Domain
    threshold: float
    signals: tuple[Signal, ...]


def level_of(score: float) -> Level:
    """Return the level of a score: high from 0.8, medium from 0.6, low from 0.4, else very low."""
    return next((level for cut, level in _LEVELS if score >= cut), "very_low")


def weighted_score(signals: Sequence[Signal]) -> float:
    """The weighted mean of the signals present (their weights renormalised), or the neutral."""
    total = sum(signal.weight for signal in signals)
    if total == 0:
        return NEUTRAL_SCORE
    score = sum(signal.score * signal.weight for signal in signals) / total
    return min(1.0, max(0.0, score))


def signals_of(question: str, answer: str, *, context: Sequence[str] = ()) -> tuple[Signal, ...]:
    """Compute every signal that can be computed for this answer, in weight order."""
    found: list[Signal] = []
    own = self_assessment(answer)
    if own is not None:
        found.append(own)
    text = strip_marker(answer)
    if text.strip():
        hedged = hedging(text)
        found += [hedged, answer_quality(question, text)]
        agreement = consistency(
            text,
            self_score=None if own is None else own.score,
            hedging_score=hedged.score,
            context=context,
        )
        if agreement is not None:
            found.append(agreement)
    return tuple(found)


def analyze(
    question: str,
    answer: str,
    *,
    settings: ConfidenceSettings,
    context: Sequence[str] = (),
) -> Assessment:
    """Assess `answer` to `question`; `context` is the retrieved passages the model was given."""
    signals = signals_of(question, answer, context=context)
    score = weighted_score(signals)
    kind = questions.domain(question, extra_high_stakes=settings.high_stakes_domains)
    return Assessment(
        score=score,
        level=level_of(score),
        domain=kind,
        threshold=review_threshold(settings, kind),
        signals=signals,
    )
