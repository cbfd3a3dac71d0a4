"""Properties of the confidence analyzer, for arbitrary text and settings.

Scores stay in [0, 1]; appending a hedge never raises confidence; stricter presets never
escalate less; the marker never survives stripping, which is idempotent; tenant high-stakes
domains only add to the defaults.
"""

import msgspec
from hypothesis import assume, given
from hypothesis import strategies as st

from metachat.orchestrator.confidence import (
    SEVERITY,
    ConfidenceSettings,
    analyze,
    decide,
    phrases,
    strip_marker,
)
from metachat.orchestrator.confidence.markers import has_marker
from metachat.orchestrator.confidence.questions import domain

HEDGE_PHRASES = [p for group in phrases.HEDGES.values() for p in group]
# Pieces that make up markers, hedges and the like, so that the text is often near the edges.
PIECES = [
    "[", "]", "(", ")", "confidence", "Confidence", " level", ":", " high", " medium", " low",
    "very low", "very_low", "80%", "250%", "**", " ", "\n", "\n\n\n", "yes", "Monday", "42",
    "definitely", "for sure", "it depends", "?", "I can't help with that", "things",
    "medical", "hi", "thanks", "talk to a human", "operator", *HEDGE_PHRASES,
]  # fmt: skip
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=40).map("".join),
)
contexts = st.lists(texts, max_size=3)
settings = st.builds(
    ConfidenceSettings,
    enabled=st.booleans(),
    hand_off_threshold=st.none() | st.floats(0, 1),
    review_threshold=st.none() | st.floats(0, 1),
    add_disclaimers=st.booleans(),
    high_stakes_domains=st.lists(st.text(max_size=12), max_size=3).map(tuple),
    handoff_keywords=st.lists(st.text(max_size=12), max_size=3).map(tuple),
)


@given(texts, texts, contexts, settings)
def test_every_score_is_between_zero_and_one(
    question: str, answer: str, context: list[str], tenant: ConfidenceSettings
) -> None:
    assessment = analyze(question, answer, settings=tenant, context=context)
    assert 0.0 <= assessment.score <= 1.0
    assert 0.0 <= assessment.threshold <= 1.0
    assert all(0.0 <= signal.score <= 1.0 for signal in assessment.signals)


@given(texts, texts, contexts, st.sampled_from(HEDGE_PHRASES))
def test_appending_a_hedge_never_raises_the_score(
    question: str, answer: str, context: list[str], hedge: str
) -> None:
    # An empty answer is no answer: it has no signals (the neutral score) and is handed off
    # whatever it scores, so "adding a hedge to it" has no meaning.
    assume(strip_marker(answer).strip())
    tenant = ConfidenceSettings()
    before = analyze(question, answer, settings=tenant, context=context)
    after = analyze(question, f"{answer} {hedge}", settings=tenant, context=context)
    assert after.score <= before.score


@given(texts, texts, contexts, settings)
def test_stricter_presets_never_escalate_less(
    question: str, answer: str, context: list[str], tenant: ConfidenceSettings
) -> None:
    severities = [
        SEVERITY[
            decide(
                question,
                answer,
                settings=msgspec.structs.replace(tenant, mode=mode),
                context=context,
            ).action
        ]
        for mode in ("strict", "standard", "lenient")
    ]
    assert severities == sorted(severities, reverse=True)


@given(texts)
def test_the_marker_never_survives_stripping(text: str) -> None:
    stripped = strip_marker(text)
    assert not has_marker(stripped)
    assert strip_marker(stripped) == stripped


@given(texts, texts)
def test_the_customer_never_sees_the_marker(question: str, answer: str) -> None:
    assert not has_marker(decide(question, answer, settings=ConfidenceSettings()).text)


@given(texts, st.lists(st.text(max_size=20), max_size=5))
def test_tenant_high_stakes_domains_only_add_to_the_defaults(
    question: str, extra: list[str]
) -> None:
    if domain(question) == "high_stakes":
        assert domain(question, extra_high_stakes=extra) == "high_stakes"
    for term in extra:
        if term.strip():
            assert domain(f"{question} {term}", extra_high_stakes=extra) == "high_stakes"
