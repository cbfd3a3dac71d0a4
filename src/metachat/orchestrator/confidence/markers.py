"""The model's self-assessment marker: read it, and remove it from what the customer sees."""

import re

LEVEL_SCORES = {"high": 0.9, "medium": 0.6, "low": 0.3, "very low": 0.1}

_VALUE = (
    r"(?:(?P<level>very[\s_-]*low|high|medium|low)(?![\w-])|(?P<percent>[0-9]+(?:\.[0-9]+)?)\s*%)"
)
_EMPHASIS = r"[*_]{0,3}"
# `[confidence: high]`, `(confidence: 80%)`, `[confidence level: low]` and the like.
_BRACKETED = re.compile(
    rf"[\[(]\s*{_EMPHASIS}confidence(?:\s+level)?{_EMPHASIS}\s*[:=]\s*{_EMPHASIS}\s*{_VALUE}"
    rf"{_EMPHASIS}\s*[\])]",
    re.IGNORECASE,
)
# `Confidence level: medium`, `**Confidence level:** 70%`.
_LABELLED = re.compile(
    rf"(?<!\w){_EMPHASIS}confidence\s+level{_EMPHASIS}\s*[:=]\s*{_EMPHASIS}\s*{_VALUE}{_EMPHASIS}",
    re.IGNORECASE,
)
_MARKERS = (_BRACKETED, _LABELLED)
# The same, with the spaces or tabs before a marker, which go with it.
_REMOVALS = tuple(re.compile(rf"[ \t]*(?:{p.pattern})", re.IGNORECASE) for p in _MARKERS)


def self_assessed(text: str) -> tuple[str, float] | None:
    """Return the lowest self-assessment in `text` as (what it said, score), or None.

    Levels score high 0.9, medium 0.6, low 0.3, very low 0.1; a percentage scores NN/100,
    clamped to [0, 1]. Where the model gave several, the lowest counts: an answer is not made
    more trustworthy by also claiming the opposite.
    """
    found = [_value(match) for pattern in _MARKERS for match in pattern.finditer(text)]
    return min(found, key=lambda said_score: said_score[1]) if found else None


def _value(match: re.Match[str]) -> tuple[str, float]:
    level = match.group("level")
    if level is not None:
        said = "very low" if level.lower().startswith("very") else level.lower()
        return said, LEVEL_SCORES[said]
    percent = match.group("percent")
    return f"{percent}%", min(1.0, max(0.0, float(percent) / 100))


def has_marker(text: str) -> bool:
    """Tell whether `text` still holds a self-assessment marker."""
    return any(pattern.search(text) for pattern in _MARKERS)


def strip_marker(text: str) -> str:
    """Return `text` without any self-assessment marker; text without one is returned as is.

    Removing a marker can bring two halves of another one together, so removal repeats until no
    marker is left; each round shortens the text, so it ends. Whitespace the marker leaves
    behind (before it, at line ends, extra blank lines, the ends of the text) is tidied.
    """
    while has_marker(text):
        for removal in _REMOVALS:
            text = removal.sub("", text)
        text = re.sub(r"[ \t]+(?=\n)", "", text)
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text
