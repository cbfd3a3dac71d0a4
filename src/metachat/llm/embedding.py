"""The offline embedder: feature hashing of words and word pairs into a fixed-size unit vector.

A lexical stand-in, not a semantic model: texts are close when they share words (after stop
words and plurals are removed), not when they mean the same thing ("refund" is not near
"money back"). It needs no key, no network and no download, and is deterministic across
processes and machines (blake2b, not Python's salted `hash`), so vectors stored yesterday still
match queries today. Use a real embedding model per tenant for semantic retrieval.
"""

import hashlib
import itertools
import math
from collections.abc import Sequence

from metachat.llm.text import content_words

DEFAULT_DIMENSIONS = 384
BIGRAM_WEIGHT = 0.5
"""Word pairs count half as much as single words: they sharpen, but must not dominate."""


class OfflineEmbedder:
    """Signed feature hashing of unigrams and bigrams, L2-normalised."""

    def __init__(self, *, dimensions: int = DEFAULT_DIMENSIONS, name: str = "offline") -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        self.name = name
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order."""
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        """The unit vector of one text.

        A text with no content words gets a fixed unit vector (first component 1), never the
        zero vector, whose cosine distance is undefined (NaN in pgvector).
        """
        vector = [0.0] * self.dimensions
        terms = content_words(text)
        features = [(t, 1.0) for t in terms] + [
            (f"{a} {b}", BIGRAM_WEIGHT) for a, b in itertools.pairwise(terms)
        ]
        for feature, weight in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "big") % self.dimensions
            # A hashed sign keeps colliding features from adding up in one direction.
            vector[index] += weight if digest[4] & 1 else -weight
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return [x / norm for x in vector]
