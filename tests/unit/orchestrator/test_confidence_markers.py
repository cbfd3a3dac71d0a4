"""The self-assessment marker: removed from the customer's text; asked for by the prompt."""

import pytest

from metachat.orchestrator.confidence import instructions, strip_marker
from metachat.orchestrator.confidence.markers import has_marker, self_assessed


class TestStripMarker:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("We open at 9.\n\n[confidence: high]", "We open at 9."),
            ("We open at 9. [confidence: very low]", "We open at 9."),
            ("We open at 9.\nConfidence level: medium\n", "We open at 9."),
            ("We open at 9. (confidence: 80%)", "We open at 9."),
            ("[confidence: low] We open at 9.", "We open at 9."),
            ("We open [confidence: low] at 9.", "We open at 9."),
            ("Line one.\n[confidence: low]\n\n\nLine two.", "Line one.\n\nLine two."),
            ("We open at 9.\n\n**Confidence level:** high", "We open at 9."),
        ],
    )
    def test_removes_the_marker(self, text: str, shown: str) -> None:
        assert strip_marker(text) == shown

    def test_leaves_text_without_a_marker_untouched(self) -> None:
        text = "  We open at 9.\n\n\n\nSee you!  "
        assert strip_marker(text) == text

    def test_removes_every_marker(self) -> None:
        assert strip_marker("A [confidence: high] B (confidence: 10%)") == "A B"

    def test_removes_a_marker_that_removal_brought_together(self) -> None:
        text = "[confidence: [confidence: low] high]"
        assert has_marker(text)
        assert strip_marker(text) == ""

    def test_keeps_text_that_only_looks_like_a_marker(self) -> None:
        text = "Our plan gives you confidence: high uptime."
        assert strip_marker(text) == text

    def test_is_idempotent(self) -> None:
        once = strip_marker("Yes. [confidence: high]")
        assert strip_marker(once) == once


class TestInstructions:
    @pytest.mark.parametrize("strategy", ["explicit_marker", "chain_of_thought"])
    def test_asks_for_a_marker_the_analyzer_reads(self, strategy: str) -> None:
        text = instructions(strategy)  # type: ignore[arg-type]
        for level in ("high", "medium", "low", "very low"):
            assert f"[confidence: {level}]" in text
            assert self_assessed(f"[confidence: {level}]") is not None

    def test_chain_of_thought_asks_to_check_silently(self) -> None:
        assert "silently" in instructions("chain_of_thought")

    def test_uncertainty_acknowledgment_asks_to_say_so_in_words(self) -> None:
        text = instructions("uncertainty_acknowledgment")
        assert "[confidence:" not in text
        assert "I'm not sure" in text
