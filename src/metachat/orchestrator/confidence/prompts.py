"""The instructions appended to the system prompt so that the model assesses itself."""

from metachat.orchestrator.confidence.presets import Strategy

_MARKER = (
    "End every answer with one last line rating how sure you are that the answer is correct "
    "and supported by what you were given, written exactly as one of: [confidence: high], "
    "[confidence: medium], [confidence: low], [confidence: very low]. Always add this line, "
    "whatever the rating; it is removed before the customer reads the answer."
)

_INSTRUCTIONS: dict[Strategy, str] = {
    "explicit_marker": _MARKER,
    "chain_of_thought": (
        "Before you answer, check silently, step by step, whether each thing you are about to "
        "say is supported by the conversation or the documents you were given, and what is "
        "missing. Do not show these steps; give only the answer. " + _MARKER
    ),
    "uncertainty_acknowledgment": (
        'When you are not sure of something, say so plainly (for example "I\'m not sure" or '
        '"I don\'t have that information") instead of guessing, and say who could help. Never '
        "invent facts, figures, prices, dates or policies."
    ),
}


def instructions(strategy: Strategy) -> str:
    """Return the text to append to the system prompt for a self-assessment strategy.

    `explicit_marker` and `chain_of_thought` ask for the `[confidence: …]` marker, which the
    analyzer reads and `strip_marker` removes. `uncertainty_acknowledgment` asks for no marker:
    the model says in words when it is unsure, and the hedging signal reads that.
    """
    return _INSTRUCTIONS[strategy]
