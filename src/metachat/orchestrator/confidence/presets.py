"""A tenant's confidence settings, the three presets, and the cut-offs they give a question."""

from typing import Annotated, Literal

import msgspec

Mode = Literal["strict", "standard", "lenient"]
Strategy = Literal["explicit_marker", "chain_of_thought", "uncertainty_acknowledgment"]
Domain = Literal["high_stakes", "standard", "low_stakes"]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

DEFAULT_DISCLAIMER = (
    "Please note: I may not have complete or up-to-date information on this, so please check "
    "the important details with our team."
)
# Scores from here up are "high"; below it an answer is sent with a disclaimer at most.
HIGH_CONFIDENCE = 0.8
# A score this close above the review bar is sent with a disclaimer even when it is "high".
DISCLAIMER_MARGIN = 0.1


class ConfidenceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's confidence settings; every field has a default."""

    enabled: bool = True
    mode: Mode = "standard"
    hand_off_threshold: Fraction | None = None
    review_threshold: Fraction | None = None
    add_disclaimers: bool = True
    disclaimer_text: str = DEFAULT_DISCLAIMER
    high_stakes_domains: tuple[str, ...] = ()
    handoff_keywords: tuple[str, ...] = ()
    self_assessment_strategy: Strategy = "explicit_marker"

    def __post_init__(self) -> None:
        for name in ("hand_off_threshold", "review_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    """The numbers of one mode: hand off below `hand_off`; review below the domain's bar."""

    hand_off: float
    high_stakes: float
    standard: float
    low_stakes: float


PRESETS: dict[Mode, Preset] = {
    "strict": Preset(hand_off=0.5, high_stakes=0.85, standard=0.7, low_stakes=0.5),
    "standard": Preset(hand_off=0.3, high_stakes=0.8, standard=0.6, low_stakes=0.4),
    "lenient": Preset(hand_off=0.2, high_stakes=0.7, standard=0.5, low_stakes=0.3),
}


class Cutoffs(msgspec.Struct, frozen=True, kw_only=True):
    """The cut-offs that applied to one answer: hand off, review and disclaimer bars."""

    mode: Mode
    hand_off: float
    review: float
    disclaimer: float


def hand_off_threshold(settings: ConfidenceSettings) -> float:
    """Below this score the conversation goes to a human at once (exactly this, nothing else)."""
    preset = PRESETS[settings.mode]
    return preset.hand_off if settings.hand_off_threshold is None else settings.hand_off_threshold


def review_threshold(settings: ConfidenceSettings, domain: Domain) -> float:
    """The bar below which an answer on this kind of question is sent and reviewed.

    Without an override it is the preset's domain threshold. A tenant's `review_threshold`
    replaces the standard bar; a high-stakes question never gets a lower bar than the preset's,
    and small talk never a higher one than the preset's.
    """
    preset = PRESETS[settings.mode]
    base = preset.standard if settings.review_threshold is None else settings.review_threshold
    if domain == "high_stakes":
        return max(base, preset.high_stakes)
    if domain == "low_stakes":
        return min(base, preset.low_stakes)
    return base


def cutoffs(settings: ConfidenceSettings, domain: Domain) -> Cutoffs:
    """The three bars for a question of `domain` under `settings`."""
    review = review_threshold(settings, domain)
    return Cutoffs(
        mode=settings.mode,
        hand_off=hand_off_threshold(settings),
        review=review,
        disclaimer=max(HIGH_CONFIDENCE, min(1.0, review + DISCLAIMER_MARGIN)),
    )
