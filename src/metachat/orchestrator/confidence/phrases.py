"""The phrase tables the analyzer reads, and how a phrase becomes a word-bounded pattern.

English only. Every phrase is matched case-insensitively on word boundaries, with any run of
whitespace between its words, so "may be" never matches inside "dismay became".
"""

import re
from collections.abc import Iterable

# Hedges by group (severity counts them all alike). No hedge begins with a word that could end
# another hedge, and none contains a confident phrase: appending one never completes or hides a
# phrase across the join, which the property tests rely on.
HEDGES: dict[str, tuple[str, ...]] = {
    "direct_uncertainty": (
        "i'm not sure",
        "i am not sure",
        "i'm not certain",
        "i am not certain",
        "i don't know",
        "i do not know",
        "i'm unsure",
        "not entirely sure",
    ),
    "qualifier": (
        "might be",
        "could be",
        "may be",
        "possibly",
        "perhaps",
        "probably",
        "maybe",
    ),
    "referral": (
        "consult with",
        "consult a",
        "speak to an expert",
        "seek professional advice",
        "check with a professional",
    ),
    "disclaimer": (
        "i think",
        "i believe",
        "it seems",
        "it appears",
        "to the best of my knowledge",
        "as far as i know",
    ),
    "deferral": (
        "beyond my expertise",
        "outside my expertise",
        "need more context",
        "need more information",
        "hard to say",
        "cannot be certain",
    ),
}

CONFIDENT_PHRASES = (
    "definitely",
    "certainly",
    "clearly",
    "absolutely",
    "without a doubt",
    "undoubtedly",
    "for sure",
    "i am confident",
    "i'm confident",
)

# Answer quality: a refusal or a non-answer (completeness 0.2) and a dodge (0.5).
DEFLECTIONS = (
    "i can't help with that",
    "i cannot help with that",
    "i'm unable to help",
    "i am unable to help",
    "i can't answer",
    "i cannot answer",
    "i don't have access",
    "i do not have access",
    "i don't have that information",
    "i do not have that information",
    "unable to provide",
)
DODGES = ("it depends", "it varies", "depends on", "varies", "unclear")
VAGUE_WORDS = ("something", "somehow", "somewhere", "stuff", "things", "various", "whatever")
# "may" is left out: it is far more often the verb (and the hedge "may be") than the month.
MONTHS = (
    "january", "february", "march", "april", "june", "july",
    "august", "september", "october", "november", "december",
)  # fmt: skip
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Domains. A tenant's terms are added to these, never put in their place.
HIGH_STAKES_TERMS = (
    "medical", "legal", "financial", "health", "diagnosis", "diagnoses", "medication",
    "lawsuit", "investment", "emergency", "medicine", "doctor", "symptom", "prescription",
    "dosage", "overdose", "pregnant", "pregnancy", "suicide", "lawyer", "attorney", "court",
    "loan", "mortgage", "insurance", "tax", "debt", "invest", "allergy", "allergic",
)  # fmt: skip
SMALL_TALK = (
    "hi", "hello", "hey", "good morning", "good afternoon", "good evening", "howdy",
    "thanks", "thank you", "thx", "cheers", "much appreciated", "bye", "goodbye",
    "see you", "how are you", "nice to meet you", "opening hours", "business hours",
    "are you open", "when do you open", "when do you close", "what time do you open",
    "what time do you close", "where are you located",
)  # fmt: skip
# Words that do not make small talk a real request ("what are your opening hours on sunday").
FILLER_WORDS = frozenset((
    "a", "an", "and", "are", "is", "it", "me", "my", "on", "so", "the", "to", "too", "very",
    "much", "you", "your", "what", "when", "today", "tomorrow", "again", "ok", "okay",
    "please", "there", "all", "good", "great", *WEEKDAYS,
))  # fmt: skip
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for",
    "from", "has", "have", "i", "if", "in", "is", "it", "its", "me", "my", "no", "not", "of",
    "on", "or", "our", "so", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "to", "too", "us", "was", "we", "were", "what", "when", "where", "which", "who",
    "will", "with", "you", "your",
))  # fmt: skip

# The customer asking for a person: a request verb near a person word, or a person word alone.
PERSON_WORDS = (
    "human", "person", "agent", "representative", "operator", "someone", "somebody",
    "manager", "supervisor", "staff",
)  # fmt: skip
HUMAN_REQUESTS = (
    "real person",
    "real human",
    "human being",
    "live agent",
    "live person",
    "human agent",
    "customer service representative",
)


def phrase_pattern(phrase: str, *, suffix: str = "") -> str:
    """Return a regex source for `phrase` on word boundaries, any whitespace between words."""
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return rf"(?<!\w){body}{suffix}(?!\w)"


def compile_phrases(phrases: Iterable[str], *, plurals: bool = False) -> re.Pattern[str] | None:
    """Compile one case-insensitive alternation of `phrases` (blank ones ignored), or None.

    Phrases are normalised like the text they are matched against (`normalise`). Longer
    phrases come first so that the longest one wins where several start at one place.
    With `plurals`, a trailing "s" or "es" is accepted ("investments").
    """
    # Not lower-cased: IGNORECASE does that, and str.lower() can change a word's length ("İ").
    cleaned = sorted(
        {" ".join(normalise(p).split()) for p in phrases if p.strip()}, key=lambda p: (len(p), p)
    )
    if not cleaned:
        return None
    suffix = "(?:e?s)?" if plurals else ""
    bodies = [r"\s+".join(re.escape(word) for word in p.split()) for p in cleaned[::-1]]
    # The word boundaries are outside the alternation, not repeated in each phrase: the same
    # matches (the engine backtracks into the alternation when the boundary after it fails),
    # but a position inside a word is given up after one look-behind instead of one per phrase
    # (measured: the confidence analysis of a reply several times faster).
    return re.compile(rf"(?<!\w)(?:{'|'.join(bodies)}){suffix}(?!\w)", re.IGNORECASE)


def normalise(text: str) -> str:
    """Return `text` with typographic (curly) apostrophes made plain ASCII ones."""
    return text.replace("\u2019", "'").replace("\u2018", "'")
