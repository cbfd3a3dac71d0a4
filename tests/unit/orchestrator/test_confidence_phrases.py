"""`compile_phrases`: one alternation with the word boundaries outside it.

It must match exactly what an alternation of whole phrases (each with its own boundaries, the
longest first) matches: the same spans, in the same order, on any text.
"""

import re

from hypothesis import given
from hypothesis import strategies as st

from metachat.orchestrator.confidence import phrases

_GROUPS = [
    (list(phrases.HEDGES["direct_uncertainty"]), False),
    ([p for group in phrases.HEDGES.values() for p in group], False),
    (list(phrases.MONTHS + phrases.WEEKDAYS), True),
    (list(phrases.SMALL_TALK), False),
]


def _per_phrase(items: list[str], *, plurals: bool) -> re.Pattern[str]:
    """The construction of one alternative per whole phrase, boundaries included."""
    cleaned = sorted(
        {" ".join(phrases.normalise(p).split()) for p in items if p.strip()},
        key=lambda p: (len(p), p),
    )
    suffix = "(?:e?s)?" if plurals else ""
    return re.compile(
        "|".join(phrases.phrase_pattern(p, suffix=suffix) for p in cleaned[::-1]), re.IGNORECASE
    )


def _texts() -> st.SearchStrategy[str]:
    words = [w for items, _ in _GROUPS for p in items for w in p.split()]
    pieces = st.one_of(
        st.sampled_from(words),
        st.sampled_from(["s", "es", "x", "'s", "-", "_", "9", "É", "İ"]),
        st.text(alphabet=" \t\n.,!?'-", min_size=1, max_size=3),
    )
    return st.lists(pieces, max_size=25).map("".join)


@given(text=_texts(), group=st.sampled_from(range(len(_GROUPS))))
def test_matches_what_one_alternative_per_phrase_matches(text: str, group: int) -> None:
    items, plurals = _GROUPS[group]
    compiled = phrases.compile_phrases(items, plurals=plurals)
    if compiled is None:
        assert not [p for p in items if p.strip()]
        return
    expected = [m.span() for m in _per_phrase(items, plurals=plurals).finditer(text)]
    assert [m.span() for m in compiled.finditer(text)] == expected


def test_a_phrase_inside_a_word_is_not_matched() -> None:
    compiled = phrases.compile_phrases(["maybe", "not sure"])
    assert compiled is not None
    assert [m.group() for m in compiled.finditer("Maybe, I'm NOT  sure; maybelline notsure")] == [
        "Maybe",
        "NOT  sure",
    ]
