"""Decide: send, send with a disclaimer, send and review, or hand off; and the record of why."""

import msgspec
import pytest

from metachat.orchestrator.confidence import (
    PRESETS,
    ConfidenceSettings,
    Decision,
    customer_asks_for_human,
    decide,
)
from metachat.orchestrator.confidence.policy import by_score
from metachat.orchestrator.confidence.presets import DEFAULT_DISCLAIMER, cutoffs

QUESTION = "How do I reset my router?"
GOOD = "Hold the reset button for 10 seconds, then wait for the lights to come back."
STANDARD = ConfidenceSettings()


def _action(score: float, settings: ConfidenceSettings = STANDARD, domain: str = "standard") -> str:
    bars = cutoffs(settings, domain)  # type: ignore[arg-type]
    return by_score(score, bars=bars, add_disclaimers=settings.add_disclaimers)[0]


class TestDecide:
    def test_sends_a_confident_answer_without_its_marker(self) -> None:
        decision = decide(QUESTION, f"{GOOD}\n\n[confidence: high]", settings=STANDARD)
        assert (decision.action, decision.reason) == ("send", "confident")
        assert decision.text == GOOD

    def test_hands_off_below_the_threshold(self) -> None:
        answer = "I'm not sure, maybe, possibly. [confidence: very low]"
        decision = decide(QUESTION, answer, settings=STANDARD)
        assert decision.assessment.score < 0.3
        assert (decision.action, decision.reason) == ("hand_off", "low_confidence")
        assert decision.text == ""

    def test_hands_off_exactly_below_the_threshold_not_at_very_low(self) -> None:
        # The earlier system handed off every very-low answer, making the cut-off 0.4.
        assert _action(0.35) == "send_and_review"
        assert _action(0.3) == "send_and_review"
        assert _action(0.2999) == "hand_off"
        assert _action(0.25, ConfidenceSettings(mode="lenient")) == "send_and_review"

    def test_reviews_below_the_domain_threshold_with_a_disclaimer(self) -> None:
        decision = decide(QUESTION, f"{GOOD} [confidence: low]", settings=STANDARD)
        assert 0.3 <= decision.assessment.score < 0.6
        assert (decision.action, decision.reason) == ("send_and_review", "below_domain_threshold")
        assert decision.text == f"{GOOD}\n\n{DEFAULT_DISCLAIMER}"

    def test_adds_a_disclaimer_to_a_medium_answer(self) -> None:
        decision = decide(QUESTION, f"{GOOD} [confidence: medium]", settings=STANDARD)
        assert decision.assessment.level == "medium"
        assert (decision.action, decision.reason) == (
            "send_with_disclaimer",
            "below_high_confidence",
        )
        assert decision.text.endswith(DEFAULT_DISCLAIMER)

    def test_adds_a_disclaimer_just_above_a_high_stakes_bar(self) -> None:
        assert _action(0.85, domain="high_stakes") == "send_with_disclaimer"
        assert _action(0.9, domain="high_stakes") == "send"
        assert _action(0.85) == "send"

    def test_uses_the_tenant_disclaimer_text(self) -> None:
        settings = ConfidenceSettings(disclaimer_text="Check with us.")
        decision = decide(QUESTION, f"{GOOD} [confidence: medium]", settings=settings)
        assert decision.text == f"{GOOD}\n\nCheck with us."

    def test_sends_without_a_disclaimer_when_disclaimers_are_off(self) -> None:
        settings = ConfidenceSettings(add_disclaimers=False)
        medium = decide(QUESTION, f"{GOOD} [confidence: medium]", settings=settings)
        low = decide(QUESTION, f"{GOOD} [confidence: low]", settings=settings)
        assert (medium.action, medium.reason, medium.text) == ("send", "disclaimers_off", GOOD)
        assert (low.action, low.text) == ("send_and_review", GOOD)

    def test_sends_everything_when_disabled_but_strips_the_marker(self) -> None:
        settings = ConfidenceSettings(enabled=False)
        answer = "I'm not sure, maybe, possibly. [confidence: very low]"
        decision = decide(QUESTION, answer, settings=settings)
        assert (decision.action, decision.reason) == ("send", "analysis_disabled")
        assert decision.text == "I'm not sure, maybe, possibly."

    def test_hands_off_an_empty_answer(self) -> None:
        for settings in (STANDARD, ConfidenceSettings(enabled=False)):
            decision = decide(QUESTION, "[confidence: high]", settings=settings)
            assert (decision.action, decision.reason) == ("hand_off", "empty_answer")

    def test_records_the_cutoffs_that_applied(self) -> None:
        decision = decide("Is this medication safe?", GOOD, settings=STANDARD)
        assert decision.cutoffs.hand_off == 0.3
        assert decision.cutoffs.review == decision.assessment.threshold == 0.8
        assert decision.cutoffs.disclaimer == pytest.approx(0.9)


class TestHandOffKeywords:
    SETTINGS = ConfidenceSettings(handoff_keywords=("cancel my contract", "Complaint"))

    @pytest.mark.parametrize(
        "question", ["I want to CANCEL my  contract now", "This is a complaint.", "complaint!"]
    )
    def test_hands_off_on_a_keyword(self, question: str) -> None:
        decision = decide(question, f"{GOOD} [confidence: high]", settings=self.SETTINGS)
        assert (decision.action, decision.reason) == ("hand_off", "handoff_keyword")
        assert decision.text == ""

    @pytest.mark.parametrize("question", ["Any complaints so far?", "noncomplaint form"])
    def test_matches_whole_words_not_substrings(self, question: str) -> None:
        assert decide(question, GOOD, settings=self.SETTINGS).action == "send"

    def test_hands_off_on_a_keyword_even_when_disabled(self) -> None:
        settings = ConfidenceSettings(enabled=False, handoff_keywords=("refund",))
        assert decide("I want a refund", GOOD, settings=settings).action == "hand_off"

    def test_blank_keywords_match_nothing(self) -> None:
        settings = ConfidenceSettings(handoff_keywords=("", "   "))
        assert decide(QUESTION, GOOD, settings=settings).action == "send"


class TestCustomerAsksForHuman:
    @pytest.mark.parametrize(
        "text",
        [
            "Can I talk to a human?",
            "I want to speak to an agent",
            "speak with a real person please",
            "Is there a real person there?",
            "Connect me to a representative",
            "I need an operator",
            "I want a human to help me",
            "Can I get a representative please?",
            "Operator!",
            "agent please",
            "Let me talk to someone",
            "Can I speak to your manager?",
            "I\u2019d like a live agent",
        ],
    )
    def test_recognises_a_request_for_a_person(self, text: str) -> None:
        assert customer_asks_for_human(text)

    @pytest.mark.parametrize(
        "text",
        [
            "My mobile operator charges too much",
            "Is this a representative sample?",
            "What does the modulo operator do?",
            "I have a human resources question",
            "The agent field is empty",
            "I need a manager account",
            "Do you want staff discounts?",
            "I need someone to fix my sink",
        ],
    )
    def test_ignores_people_words_in_passing(self, text: str) -> None:
        assert not customer_asks_for_human(text)

    def test_hands_off_when_the_customer_asks_even_when_disabled(self) -> None:
        settings = ConfidenceSettings(enabled=False)
        decision = decide("Let me talk to a human", GOOD, settings=settings)
        assert (decision.action, decision.reason) == ("hand_off", "customer_asked_for_human")


class TestPresets:
    @pytest.mark.parametrize(
        ("mode", "bars"),
        [
            ("strict", (0.5, 0.85, 0.7, 0.5)),
            ("standard", (0.3, 0.8, 0.6, 0.4)),
            ("lenient", (0.2, 0.7, 0.5, 0.3)),
        ],
    )
    def test_each_preset_has_its_thresholds(self, mode: str, bars: tuple[float, ...]) -> None:
        settings = ConfidenceSettings(mode=mode)  # type: ignore[arg-type]
        reviews = [cutoffs(settings, d).review for d in ("high_stakes", "standard", "low_stakes")]
        got = (cutoffs(settings, "standard").hand_off, *reviews)
        assert got == bars
        assert PRESETS[mode].hand_off == bars[0]  # type: ignore[index]

    @pytest.mark.parametrize(
        ("score", "strict", "standard", "lenient"),
        [
            (0.25, "hand_off", "hand_off", "send_and_review"),
            (0.45, "hand_off", "send_and_review", "send_and_review"),
            (0.55, "send_and_review", "send_and_review", "send_with_disclaimer"),
            (0.65, "send_and_review", "send_with_disclaimer", "send_with_disclaimer"),
            (0.75, "send_with_disclaimer", "send_with_disclaimer", "send_with_disclaimer"),
            (0.85, "send", "send", "send"),
        ],
    )
    def test_stricter_presets_escalate_more(
        self, score: float, strict: str, standard: str, lenient: str
    ) -> None:
        got = [
            _action(score, ConfidenceSettings(mode=m)) for m in ("strict", "standard", "lenient")
        ]
        assert got == [strict, standard, lenient]


class TestTenantOverrides:
    def test_the_hand_off_threshold_is_exactly_the_override(self) -> None:
        settings = ConfidenceSettings(hand_off_threshold=0.45)
        assert _action(0.449, settings) == "hand_off"
        assert _action(0.45, settings) == "send_and_review"

    def test_the_review_threshold_moves_the_standard_bar(self) -> None:
        settings = ConfidenceSettings(review_threshold=0.7)
        assert cutoffs(settings, "standard").review == 0.7
        assert _action(0.65, settings) == "send_and_review"

    def test_the_review_threshold_keeps_high_stakes_at_least_as_strict(self) -> None:
        lower = ConfidenceSettings(review_threshold=0.5)
        higher = ConfidenceSettings(review_threshold=0.9)
        assert cutoffs(lower, "high_stakes").review == 0.8
        assert cutoffs(higher, "high_stakes").review == 0.9

    def test_the_review_threshold_keeps_small_talk_at_most_as_strict(self) -> None:
        assert cutoffs(ConfidenceSettings(review_threshold=0.9), "low_stakes").review == 0.4
        assert cutoffs(ConfidenceSettings(review_threshold=0.2), "low_stakes").review == 0.2

    def test_tenant_high_stakes_domains_keep_the_defaults(self) -> None:
        settings = ConfidenceSettings(high_stakes_domains=("warranty",))
        assert decide("Is it legal?", GOOD, settings=settings).assessment.domain == "high_stakes"
        assert decide("Warranty?", GOOD, settings=settings).assessment.domain == "high_stakes"

    @pytest.mark.parametrize("value", [-0.1, 1.5])
    def test_rejects_thresholds_outside_zero_to_one(self, value: float) -> None:
        with pytest.raises(ValueError, match="between 0 and 1"):
            ConfidenceSettings(review_threshold=value)
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(f'{{"hand_off_threshold": {value}}}', type=ConfidenceSettings)


class TestDecisionRecord:
    def test_round_trips_through_json(self) -> None:
        decision = decide(
            "Is this medication safe with alcohol?",
            "I think you should consult with your doctor. [confidence: low]",
            settings=ConfidenceSettings(mode="strict"),
            context=["Ask your doctor before mixing medication and alcohol."],
        )
        encoded = msgspec.json.encode(decision)
        assert msgspec.json.decode(encoded, type=Decision) == decision

    def test_encodes_to_plain_builtins_with_every_signal(self) -> None:
        decision = decide(QUESTION, f"{GOOD} [confidence: medium]", settings=STANDARD)
        record = msgspec.to_builtins(decision)
        assert record["action"] == "send_with_disclaimer"
        assert [s["name"] for s in record["assessment"]["signals"]] == [
            "self_assessment",
            "hedging",
            "answer_quality",
            "consistency",
        ]
        assert all(s["reason"] for s in record["assessment"]["signals"])

    def test_settings_round_trip_through_json(self) -> None:
        settings = ConfidenceSettings(mode="lenient", handoff_keywords=("refund",))
        encoded = msgspec.json.encode(settings)
        assert msgspec.json.decode(encoded, type=ConfidenceSettings) == settings
