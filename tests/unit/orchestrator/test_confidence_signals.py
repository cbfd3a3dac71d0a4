"""The confidence signals one by one: self-assessment, hedging, answer quality, consistency."""

import pytest

from metachat.orchestrator.confidence import phrases
from metachat.orchestrator.confidence.signals import (
    WEIGHTS,
    answer_quality,
    consistency,
    hedging,
    self_assessment,
)

LONG_QUESTION = "Can you please explain to me in detail how the refund process works for my order?"


class TestSelfAssessment:
    @pytest.mark.parametrize(
        ("marker", "score"),
        [
            ("[confidence: high]", 0.9),
            ("[confidence: medium]", 0.6),
            ("[confidence: low]", 0.3),
            ("[confidence: very low]", 0.1),
            ("[Confidence: VERY_LOW]", 0.1),
            ("[ confidence : High ]", 0.9),
            ("Confidence level: medium", 0.6),
            ("**Confidence level:** low", 0.3),
            ("confidence level: 70%", 0.7),
            ("(confidence: 85%)", 0.85),
            ("(confidence: 42.5 %)", 0.425),
            ("[confidence: 100%]", 1.0),
        ],
    )
    def test_reads_each_marker_form(self, marker: str, score: float) -> None:
        signal = self_assessment(f"Open from 9 to 5. {marker}")
        assert signal is not None
        assert signal.score == pytest.approx(score)
        assert signal.weight == WEIGHTS["self_assessment"]

    def test_clamps_a_percentage_above_a_hundred(self) -> None:
        signal = self_assessment("Yes. (confidence: 250%)")
        assert signal is not None
        assert signal.score == 1.0

    def test_is_absent_without_a_marker(self) -> None:
        assert self_assessment("We are open from 9 to 5.") is None

    @pytest.mark.parametrize(
        "text",
        [
            "Our product gives you confidence: high quality at low prices.",
            "confidence level: higher than ever",
            "[confidence: great]",
            "I have low confidence in that.",
        ],
    )
    def test_ignores_text_that_only_looks_like_a_marker(self, text: str) -> None:
        assert self_assessment(text) is None

    def test_takes_the_lowest_of_several_markers(self) -> None:
        signal = self_assessment("[confidence: high] ... Confidence level: low")
        assert signal is not None
        assert signal.score == pytest.approx(0.3)
        assert "low" in signal.reason


class TestHedging:
    def test_scores_one_without_hedges(self) -> None:
        assert hedging("The parcel arrives on Monday.").score == 1.0

    @pytest.mark.parametrize("group", sorted(phrases.HEDGES))
    def test_each_hedge_group_lowers_the_score(self, group: str) -> None:
        phrase = phrases.HEDGES[group][0]
        signal = hedging(f"The parcel arrives on Monday, {phrase}.")
        assert signal.score == pytest.approx(1 - 1 / 3)
        assert group in signal.reason

    @pytest.mark.parametrize("phrase", [p for group in phrases.HEDGES.values() for p in group])
    def test_recognises_every_hedge_phrase(self, phrase: str) -> None:
        assert hedging(f"Well, {phrase.upper()} the answer.").score < 1.0

    def test_three_hedges_are_the_worst(self) -> None:
        three = hedging("I think it may be Monday, possibly Tuesday.")
        four = hedging("I think it may be Monday, possibly Tuesday, perhaps later.")
        assert three.score == 0.0
        assert four.score == 0.0

    def test_confident_phrases_offset_hedges(self) -> None:
        # severity = min(2/3, 1) - 0.5 * min(2/2, 1) = 1/6
        signal = hedging("It is definitely Monday and certainly not Sunday, possibly perhaps.")
        assert signal.score == pytest.approx(1 - 1 / 6)

    def test_confident_phrases_alone_cannot_push_above_one(self) -> None:
        assert hedging("Definitely, certainly, absolutely.").score == 1.0

    @pytest.mark.parametrize(
        "text", ["The dismay became clear.", "Maybelline sells it.", "Perhapsburg is a town."]
    )
    def test_matches_on_word_boundaries_only(self, text: str) -> None:
        assert hedging(text).score == 1.0

    def test_reads_curly_apostrophes(self) -> None:
        assert hedging("I\u2019m not sure about that.").score < 1.0


class TestAnswerQuality:
    def test_a_short_answer_to_a_long_question_scores_low_on_length(self) -> None:
        assert "length 0.3" in answer_quality(LONG_QUESTION, "Yes, it works.").reason

    def test_a_short_answer_to_a_short_question_is_fine(self) -> None:
        assert "length 0.9" in answer_quality("Open today?", "Yes, until 6.").reason

    def test_a_very_long_answer_scores_lower_on_length(self) -> None:
        assert "length 0.6" in answer_quality("Why?", "word " * 501).reason

    def test_hedge_phrases_do_not_count_as_length(self) -> None:
        reason = answer_quality("Why?", "I'm not sure, perhaps, maybe.").reason
        assert "length 0.1" in reason

    def test_a_deflection_scores_low_on_completeness(self) -> None:
        reason = answer_quality("Where is my parcel?", "Sorry, I can't help with that.").reason
        assert "completeness 0.2" in reason

    def test_it_depends_to_a_question_scores_half_on_completeness(self) -> None:
        reason = answer_quality("How long does it take?", "It depends on the courier.").reason
        assert "completeness 0.5" in reason

    def test_it_depends_without_a_question_mark_is_complete(self) -> None:
        reason = answer_quality("Tell me the delivery time", "It depends on the courier.").reason
        assert "completeness 0.8" in reason

    def test_numbers_and_dates_make_an_answer_specific(self) -> None:
        # 0.5 + 0.2 * (3 numbers + 1 weekday) = 1.3, clamped to 1
        reason = answer_quality("When?", "On Monday from 9:00 to 17:00, door 4.").reason
        assert "specificity 1.00" in reason

    def test_vague_words_make_an_answer_unspecific(self) -> None:
        reason = answer_quality("What?", "Various things, stuff, something somewhere.").reason
        assert "specificity 0.20" in reason

    def test_the_score_is_the_mean_of_the_three(self) -> None:
        signal = answer_quality(LONG_QUESTION, "Yes, it works.")
        assert signal.score == pytest.approx((0.3 + 0.8 + 0.5) / 3)
        assert signal.weight == WEIGHTS["answer_quality"]


class TestConsistency:
    def test_is_absent_without_a_marker_or_context(self) -> None:
        assert consistency("Yes.", self_score=None, hedging_score=1.0, context=()) is None

    def test_is_the_agreement_of_self_assessment_and_hedging(self) -> None:
        signal = consistency("Yes.", self_score=0.9, hedging_score=1 / 3, context=())
        assert signal is not None
        assert signal.score == pytest.approx(1 - (0.9 - 1 / 3))

    def test_is_the_share_of_content_words_found_in_the_context(self) -> None:
        context = ["Refunds are processed within 5 business days."]
        signal = consistency(
            "Refunds take 5 business days.", self_score=None, hedging_score=1.0, context=context
        )
        assert signal is not None
        assert signal.score == pytest.approx(4 / 5)

    def test_averages_both_checks(self) -> None:
        signal = consistency(
            "Refunds take 5 business days.",
            self_score=0.9,
            hedging_score=1.0,
            context=["Refunds take 5 business days."],
        )
        assert signal is not None
        assert signal.score == pytest.approx((0.9 + 1.0) / 2)

    def test_ignores_empty_context(self) -> None:
        assert consistency("Yes.", self_score=None, hedging_score=1.0, context=["", " "]) is None
