"""Words, as the offline provider and the offline embedder see them: lower-case, no stop words.

Deliberately simple (a regex and a light plural rule) and English-oriented: it only has to make
"refund policies" match "our refund policy", not understand anything.
"""

import re

_WORD = re.compile(r"[^\W_]+")
_STOP_WORD_LIST = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves please tell know want need like get let thanks thank hi hello hey also may might
    must shall us much many
"""
STOP_WORDS = frozenset(_STOP_WORD_LIST.split())


def words(text: str) -> list[str]:
    """Every word of `text`, lower-cased, in order."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    """How many words `text` has (the offline provider's stand-in for tokens)."""
    return len(_WORD.findall(text))


_MIN_IES_PLURAL = 5  # "ties" stays, "cities" becomes "city"
_MIN_S_PLURAL = 4  # "bus" and "gas" stay, "days" becomes "day"


def stem(word: str) -> str:
    """A light plural rule: `policies` → `policy`, `hours` → `hour`, `class` stays."""
    if len(word) >= _MIN_IES_PLURAL and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) >= _MIN_S_PLURAL and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """The stemmed words of `text` that carry meaning, in order."""
    return [stem(w) for w in words(text) if w not in STOP_WORDS]


def content_terms(text: str) -> frozenset[str]:
    """The distinct content words of `text`."""
    return frozenset(content_words(text))
