"""What the customer's message says: its domain, a hand-off keyword, a request for a person."""

import functools
import re
from collections.abc import Iterable

from metachat.orchestrator.confidence import phrases
from metachat.orchestrator.confidence.presets import Domain

_DEFAULT_HIGH_STAKES = phrases.compile_phrases(phrases.HIGH_STAKES_TERMS, plurals=True)
_SMALL_TALK = phrases.compile_phrases(phrases.SMALL_TALK)
# Small talk stays small with at most this many words of anything else around it.
SMALL_TALK_EXTRA_WORDS = 2

_PERSON = "|".join(phrases.PERSON_WORDS)
_NAMED_PERSON = "|".join(
    w for w in phrases.PERSON_WORDS if w not in {"someone", "somebody", "staff"}
)
# After "I want a human": the end of the clause, not "a manager account" or "staff discounts".
_CLAUSE_END = r"(?=\s*(?:$|[.,!?;:)]|(?:please|now|to|who|that|on|asap|here)(?!\w)))"
_ARTICLE = r"(?:(?:a|an|the|some|your|one\s+of\s+your|real|live|actual)\s+)*"
_ASKS_FOR_HUMAN = re.compile(
    "|".join(
        [
            *(phrases.phrase_pattern(p) for p in phrases.HUMAN_REQUESTS),
            # "talk to a human", "speak with an agent", "chat with someone"
            rf"(?<!\w)(?:talk|speak|chat)\s+(?:to|with)\s+{_ARTICLE}(?:{_PERSON})s?(?![\w-])",
            # "is there a person I can talk to"
            rf"(?<!\w)(?:{_PERSON})\s+(?:i|we)\s+(?:can|could)\s+(?:talk|speak|chat)(?!\w)",
            # "connect me to an agent", "transfer me to a representative", "put me through to"
            (
                rf"(?<!\w)(?:connect|transfer|put)\s+me\s+(?:through\s+)?(?:to|with)\s+"
                rf"{_ARTICLE}(?:{_PERSON})(?![\w-])"
            ),
            # "I want a human", "can I get a representative", "need an operator"
            rf"(?<!\w)(?:want|need|get)\s+{_ARTICLE}(?:{_NAMED_PERSON}){_CLAUSE_END}",
            # the whole message is a person word: "Operator!", "agent please", "human?"
            rf"^\W*{_ARTICLE}(?:{_PERSON})(?:\s+please)?\W*$",
        ]
    ),
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=256)
def _terms_pattern(terms: tuple[str, ...], *, plurals: bool) -> re.Pattern[str] | None:
    return phrases.compile_phrases(terms, plurals=plurals)


def _mentions(pattern: re.Pattern[str] | None, text: str) -> bool:
    return pattern is not None and pattern.search(phrases.normalise(text)) is not None


def domain(question: str, *, extra_high_stakes: Iterable[str] = ()) -> Domain:
    """Classify the question: high-stakes, small talk (low-stakes), or standard.

    High-stakes when it mentions a default high-stakes term or one of the tenant's (these only
    add to the defaults). Low-stakes when it is small talk: a greeting, thanks or opening-hours
    question with at most two other content words around it.
    """
    extra = _terms_pattern(tuple(extra_high_stakes), plurals=True)
    if _mentions(_DEFAULT_HIGH_STAKES, question) or _mentions(extra, question):
        return "high_stakes"
    return "low_stakes" if _is_small_talk(question) else "standard"


def _is_small_talk(question: str) -> bool:
    if _SMALL_TALK is None or not _mentions(_SMALL_TALK, question):
        return False
    rest = _SMALL_TALK.sub(" ", phrases.normalise(question))
    extra = [w for w in re.findall(r"\w+", rest.lower()) if w not in phrases.FILLER_WORDS]
    return len(extra) <= SMALL_TALK_EXTRA_WORDS


def mentions_keyword(text: str, keywords: Iterable[str]) -> bool:
    """Tell whether `text` holds one of `keywords`: case-insensitive, whole words only."""
    return _mentions(_terms_pattern(tuple(keywords), plurals=False), text)


def customer_asks_for_human(text: str) -> bool:
    """Tell whether the customer asks for a person ("talk to a human", "real person", …).

    "Representative" and "operator" count when asked for ("I want a representative") or when
    they are the whole message ("Operator!"), not in passing ("my mobile operator").
    """
    return _ASKS_FOR_HUMAN.search(phrases.normalise(text)) is not None
