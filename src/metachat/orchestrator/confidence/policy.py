"""What to do with an answer: send it, add a disclaimer, ask a human to review, or hand off."""

from collections.abc import Sequence
from typing import Literal

import msgspec

from metachat.orchestrator.confidence import questions
from metachat.orchestrator.confidence.analyzer import Assessment, analyze
from metachat.orchestrator.confidence.markers import strip_marker
from metachat.orchestrator.confidence.presets import (
    HIGH_CONFIDENCE,
    ConfidenceSettings,
    Cutoffs,
    cutoffs,
)

Action = Literal["send", "send_with_disclaimer", "send_and_review", "hand_off"]
Reason = Literal[
    "handoff_keyword",
    "customer_asked_for_human",
    "empty_answer",
    "analysis_disabled",
    "low_confidence",
    "below_domain_threshold",
    "below_high_confidence",
    "near_domain_threshold",
    "disclaimers_off",
    "confident",
]
# How far each action escalates; the rules never give a lower score a lower severity.
SEVERITY: dict[Action, int] = {
    "send": 0,
    "send_with_disclaimer": 1,
    "send_and_review": 2,
    "hand_off": 3,
}
_WITH_DISCLAIMER: frozenset[Action] = frozenset({"send_with_disclaimer", "send_and_review"})


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with one answer and why; it goes into the event as it is.

    `text` is what the customer sees: the answer without its self-assessment marker, with the
    disclaimer when the action calls for one. It is empty for a hand-off: the caller sends the
    tenant's hand-off wording.
    """

    action: Action
    reason: Reason
    assessment: Assessment
    cutoffs: Cutoffs
    text: str


def decide(
    question: str,
    answer: str,
    *,
    settings: ConfidenceSettings,
    context: Sequence[str] = (),
) -> Decision:
    """Assess `answer` to `question` and decide what to do with it (see decision 0010)."""
    assessment = analyze(question, answer, settings=settings, context=context)
    bars = cutoffs(settings, assessment.domain)
    shown = strip_marker(answer)
    action, reason = _choose(question, shown, assessment.score, bars=bars, settings=settings)
    return Decision(
        action=action,
        reason=reason,
        assessment=assessment,
        cutoffs=bars,
        text=_customer_text(action, shown, settings),
    )


def _choose(
    question: str, shown: str, score: float, *, bars: Cutoffs, settings: ConfidenceSettings
) -> tuple[Action, Reason]:
    if questions.mentions_keyword(question, settings.handoff_keywords):
        return "hand_off", "handoff_keyword"
    if questions.customer_asks_for_human(question):
        return "hand_off", "customer_asked_for_human"
    if not shown.strip():
        return "hand_off", "empty_answer"
    if not settings.enabled:
        return "send", "analysis_disabled"
    return by_score(score, bars=bars, add_disclaimers=settings.add_disclaimers)


def by_score(score: float, *, bars: Cutoffs, add_disclaimers: bool) -> tuple[Action, Reason]:
    """The action a score calls for under `bars`: monotone, a lower score never escalates less."""
    if score < bars.hand_off:
        return "hand_off", "low_confidence"
    if score < bars.review:
        return "send_and_review", "below_domain_threshold"
    if score < bars.disclaimer:
        if not add_disclaimers:
            return "send", "disclaimers_off"
        if score < HIGH_CONFIDENCE:
            return "send_with_disclaimer", "below_high_confidence"
        return "send_with_disclaimer", "near_domain_threshold"
    return "send", "confident"


def _customer_text(action: Action, shown: str, settings: ConfidenceSettings) -> str:
    if action == "hand_off":
        return ""
    disclaimer = settings.disclaimer_text.strip()
    if action in _WITH_DISCLAIMER and settings.add_disclaimers and disclaimer:
        return f"{shown}\n\n{disclaimer}"
    return shown
