"""BM25 as Qdrant sparse vectors: term-frequency saturation here, IDF by Qdrant at query time.

Document vectors hold, per term, the BM25 term-frequency part

    tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avg_len))

and query vectors hold 1.0 per distinct term. The collection's sparse vector is created with
``Modifier.IDF``, so Qdrant multiplies each query weight by ``ln((N - df + 0.5) / (df + 0.5) + 1)``
from its live statistics (server and local mode alike; verified in ``tests/retrieval``), and the
dot product is exactly Okapi BM25. ``avg_len`` is a setting rather than a corpus statistic, so
indexing needs no corpus state and chunks can be added one document at a time.

Analysis follows Lucene's English analyzer (as Pyserini's BM25 baselines do): lower-case word
tokens, English possessives dropped, Lucene's stop words removed, Porter stemming. Term ids are
the first 4 bytes of blake2b of the stemmed term: deterministic across processes and versions,
with a collision chance that is negligible at vocabulary sizes of a few million.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from ragd.retrieval.base import SparseVector

#: Lucene's EnglishAnalyzer stop set.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
_APOSTROPHES = "'\u2019"
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_MAX_TOKEN_CHARS = 64  # longer "words" are noise (hashes, base64) and bloat the vocabulary


@lru_cache(maxsize=1)
def _stemmer() -> object:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer(mode=PorterStemmer.ORIGINAL_ALGORITHM)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    stem: str = _stemmer().stem(word, to_lowercase=False)  # type: ignore[attr-defined]
    return stem


@lru_cache(maxsize=200_000)
def term_id(term: str) -> int:
    """The sparse-vector index of an analysed term (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def analyze(text: str) -> list[str]:
    """Analysed terms of ``text`` in order (lower-cased, stop words removed, Porter-stemmed)."""
    terms = []
    for match in _TOKEN.finditer(text.lower()):
        word = match.group()
        if word[-2:-1] in _APOSTROPHES and word.endswith("s"):
            word = word[:-2]
        word = word.replace("\u2019", "'")
        if not word or word in STOP_WORDS or len(word) > _MAX_TOKEN_CHARS:
            continue
        terms.append(_stem(word))
    return terms


class BM25Encoder:
    """:class:`~ragd.retrieval.base.SparseEncoder` producing BM25 term weights (IDF left to Qdrant)."""

    def __init__(self, *, k1: float = 0.9, b: float = 0.4, avg_len: float = 200.0) -> None:
        if k1 <= 0 or not 0 <= b <= 1 or avg_len <= 0:
            raise ValueError("BM25 needs k1 > 0, 0 <= b <= 1 and avg_len > 0")
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len
        self.name = f"bm25-lucene-porter-k1={k1:g}-b={b:g}-avg={avg_len:g}"

    def _document(self, text: str) -> SparseVector:
        terms = analyze(text)
        if not terms:
            return SparseVector(indices=[], values=[])
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            # Two terms hashing to one id add up, as if they were one term.
            idx = term_id(term)
            weights[idx] = weights.get(idx, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        indices = sorted(weights)
        return SparseVector(indices=indices, values=[weights[i] for i in indices])

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """BM25 term-frequency weights of passages."""
        return [self._document(text) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        """1.0 per distinct query term (Qdrant's IDF modifier supplies the term weights)."""
        indices = sorted({term_id(term) for term in analyze(text)})
        return SparseVector(indices=indices, values=[1.0] * len(indices))
