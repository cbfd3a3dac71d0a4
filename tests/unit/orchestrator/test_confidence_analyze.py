"""Analyze: the weighted score over the signals present, the level, the domain, the bar."""

import pytest

from metachat.orchestrator.confidence import ConfidenceSettings, analyze
from metachat.orchestrator.confidence.analyzer import NEUTRAL_SCORE, level_of, weighted_score
from metachat.orchestrator.confidence.questions import domain
from metachat.orchestrator.confidence.signals import Signal

STANDARD = ConfidenceSettings()
PLAIN = "Hold the reset button for 10 seconds, then wait for the lights to come back."


def _names(question: str, answer: str, **kwargs: object) -> list[str]:
    return [s.name for s in analyze(question, answer, settings=STANDARD, **kwargs).signals]  # type: ignore[arg-type]


class TestAnalyze:
    def test_uses_only_the_signals_present(self) -> None:
        assert _names("How do I reset it?", PLAIN) == ["hedging", "answer_quality"]

    def test_adds_self_assessment_and_consistency_with_a_marker(self) -> None:
        assert _names("How do I reset it?", f"{PLAIN} [confidence: high]") == [
            "self_assessment",
            "hedging",
            "answer_quality",
            "consistency",
        ]

    def test_adds_consistency_with_context(self) -> None:
        names = _names("How do I reset it?", PLAIN, context=["Hold the reset button."])
        assert names == ["hedging", "answer_quality", "consistency"]

    def test_renormalises_the_weights_over_the_signals_present(self) -> None:
        assessment = analyze("How do I reset it?", PLAIN, settings=STANDARD)
        hedged, quality = assessment.signals
        expected = (0.25 * hedged.score + 0.15 * quality.score) / 0.4
        assert assessment.score == pytest.approx(expected)

    def test_weights_are_half_quarter_and_the_rest(self) -> None:
        assessment = analyze("How?", f"{PLAIN} [confidence: low]", settings=STANDARD)
        assert [s.weight for s in assessment.signals] == [0.5, 0.25, 0.15, 0.1]
        expected = sum(s.score * s.weight for s in assessment.signals)
        assert assessment.score == pytest.approx(expected)

    def test_an_empty_answer_has_no_signals_and_the_neutral_score(self) -> None:
        assessment = analyze("How?", "   ", settings=STANDARD)
        assert assessment.signals == ()
        assert assessment.score == NEUTRAL_SCORE
        assert weighted_score([]) == NEUTRAL_SCORE

    def test_a_marker_alone_is_scored_by_the_marker(self) -> None:
        assessment = analyze("How?", "[confidence: very low]", settings=STANDARD)
        assert [s.name for s in assessment.signals] == ["self_assessment"]
        assert assessment.score == pytest.approx(0.1)

    def test_the_marker_does_not_count_as_text(self) -> None:
        bare = analyze("How?", PLAIN, settings=STANDARD).signals
        marked = analyze("How?", f"{PLAIN} [confidence: high]", settings=STANDARD).signals
        assert marked[1:3] == bare

    def test_reports_the_domain_and_its_threshold(self) -> None:
        assessment = analyze("Is this medication safe?", PLAIN, settings=STANDARD)
        assert (assessment.domain, assessment.threshold) == ("high_stakes", 0.8)

    def test_signals_are_plain_structs(self) -> None:
        signal = analyze("How?", PLAIN, settings=STANDARD).signals[0]
        assert isinstance(signal, Signal)
        assert 0.0 <= signal.score <= 1.0


class TestLevel:
    @pytest.mark.parametrize(
        ("score", "level"),
        [
            (1.0, "high"),
            (0.8, "high"),
            (0.79, "medium"),
            (0.6, "medium"),
            (0.59, "low"),
            (0.4, "low"),
            (0.39, "very_low"),
            (0.0, "very_low"),
        ],
    )
    def test_cuts_at_eight_six_and_four_tenths(self, score: float, level: str) -> None:
        assert level_of(score) == level


class TestDomain:
    @pytest.mark.parametrize(
        "question",
        [
            "Is this covered by my health insurance?",
            "I need a medical certificate",
            "Can I take it with my medication?",
            "Is this LEGAL in France?",
            "What about my investments?",
            "It's an emergency!",
            "Hi, emergency here",
        ],
    )
    def test_high_stakes_terms_make_a_question_high_stakes(self, question: str) -> None:
        assert domain(question) == "high_stakes"

    @pytest.mark.parametrize(
        "question",
        [
            "Hi!",
            "Hello there",
            "Thanks so much!",
            "thank you, bye",
            "Good morning, how are you?",
            "What are your opening hours on Sunday?",
            "Are you open today?",
        ],
    )
    def test_small_talk_is_low_stakes(self, question: str) -> None:
        assert domain(question) == "low_stakes"

    @pytest.mark.parametrize(
        "question",
        [
            "Hi, my order 1234 has not arrived and I was charged twice",
            "Thanks, but the router still does not work after the reset",
            "How do I reset my router?",
            "This",
            "",
        ],
    )
    def test_everything_else_is_standard(self, question: str) -> None:
        assert domain(question) == "standard"

    def test_terms_match_whole_words_only(self) -> None:
        assert domain("Is the paralegal course open?") == "standard"
        assert domain("Which is healthier, tea or coffee?") == "standard"

    def test_tenant_terms_add_to_the_defaults(self) -> None:
        extra = ("warranty claim",)
        assert domain("How do I file a warranty claim?", extra_high_stakes=extra) == "high_stakes"
        assert domain("Is this a medical device?", extra_high_stakes=extra) == "high_stakes"
        assert domain("How do I file a warranty claim?") == "standard"

    def test_tenant_terms_are_used_by_analyze(self) -> None:
        settings = ConfidenceSettings(high_stakes_domains=("Firearms",))
        assessment = analyze("Do you sell firearms?", PLAIN, settings=settings)
        assert assessment.domain == "high_stakes"

    def test_blank_tenant_terms_are_ignored(self) -> None:
        assert domain("How do I reset my router?", extra_high_stakes=("", "  ")) == "standard"
