"""The trained prompt-injection / jailbreak classifier: a linear head on MiniLM embeddings.

Features are the L2-normalised all-MiniLM-L6-v2 sentence embedding (semantics: "this asks the
model to abandon its instructions") concatenated with hashed character n-grams (surface cues that
survive translation and obfuscation: "ignor", "system prompt", "DAN"). A logistic-regression head
on both is trained by :mod:`ragd.guardrails.injection_training`. A text is scored as a whole and
sentence by sentence, and the maximum is kept, because attacks are often a harmless question with
an injection appended, which dilutes a whole-text embedding.

The model file is a small JSON document (no pickle: loading it never executes code).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix, hstack

from ragd.guardrails.text_encoder import MINILM_NAME, CachedEncoder

FORMAT = "ragd-injection-classifier/1"
PACKAGED_MODEL = Path(__file__).parent / "data" / "injection_classifier.json"

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;:])\s+|\n+|(?<=[a-z0-9])\s+-\s+")
MAX_SEGMENTS = 12
MIN_SEGMENT_CHARS = 8
#: Whole-text scores below this skip the per-sentence pass (measured: no recall lost on the dev
#: and held-out sets, and 90-95% of messages need one encoder pass instead of two).
SEGMENT_FLOOR = 0.01
#: Texts with more sentences than this are always scored sentence by sentence.
ALWAYS_SEGMENT = 3
#: With in-context sentence vectors (a sentence's tokens pooled from the whole text's encoder
#: pass, free when the text is embedded anyway), only sentences scoring at least this are encoded
#: on their own for the verdict. In-context vectors are not the standalone vectors the head was
#: trained on, so they only choose which sentences to encode. Measured on 600 benign SciFact
#: abstracts and 300 with an injected sentence at the end, start or middle: the benign flag rate
#: is unchanged (3.3%) and 1 of 224 injections caught by the full scan is missed, for about a
#: third of the scan's encoder time (0.0005 missed none; 0.005 missed 2). Re-measure with
#: bench/guardrails_bench.py (``ingestion_scan``) when the head is retrained.
CONTEXT_GATE = 0.001


def segments(text: str) -> list[str]:
    """The sentences of ``text`` worth scoring on their own (empty for one-sentence texts)."""
    parts = [p.strip() for p in _SENTENCE_SPLIT.split(text)]
    parts = [p for p in parts if len(p) >= MIN_SEGMENT_CHARS]
    if len(parts) <= 1:
        return []
    if len(parts) > MAX_SEGMENTS:  # keep both ends: injections are appended or prepended
        half = MAX_SEGMENTS // 2
        parts = parts[:half] + parts[-half:]
    return parts


def segment_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of :func:`segments` in ``text``, in the same order."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for part in segments(text):
        start = text.find(part, cursor)
        if start < 0:  # cannot happen for parts cut from text; keep the spans aligned anyway
            start = text.find(part)
        spans.append((start, start + len(part)))
        cursor = start + len(part)
    return spans


@dataclass(frozen=True)
class HashingSpec:
    """How character n-grams are hashed (must match between training and inference)."""

    n_features: int = 2**15
    ngram_min: int = 2
    ngram_max: int = 5

    def vectorizer(self) -> Any:
        """The scikit-learn ``HashingVectorizer`` for this spec."""
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(self.ngram_min, self.ngram_max),
            n_features=self.n_features,
            alternate_sign=False,
            norm="l2",
            lowercase=True,
        )


@dataclass
class InjectionClassifier:
    """Linear head over [MiniLM embedding | hashed char n-grams]; ``score`` is P(attack)."""

    coef: npt.NDArray[np.float64]
    intercept: float
    threshold: float
    hashing: HashingSpec = field(default_factory=HashingSpec)
    embedding_dim: int = 384
    encoder_name: str = MINILM_NAME
    metrics: dict[str, Any] = field(default_factory=dict)
    _vectorizer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        expected = self.embedding_dim + self.hashing.n_features
        if self.coef.shape != (expected,):
            raise ValueError(f"classifier has {self.coef.shape} weights, expected ({expected},)")
        self._vectorizer = self.hashing.vectorizer()

    def features(self, embeddings: npt.NDArray[np.float32], texts: Sequence[str]) -> csr_matrix:
        """The feature matrix of ``texts`` given their embeddings (training fits ``coef`` on it;
        :meth:`probabilities` computes the same logits without building it)."""
        grams = self._vectorizer.transform(list(texts))
        return hstack([csr_matrix(embeddings.astype(np.float64)), grams]).tocsr()

    def probabilities(
        self,
        embeddings: npt.NDArray[np.float32],
        texts: Sequence[str],
        grams: dict[str, float] | None = None,
    ) -> npt.NDArray[np.float64]:
        """P(attack) of each text (no segment max).

        The head is linear, so a text's logit is its embedding's part plus its n-grams' part;
        ``grams`` caches the latter by text across calls (a sentence is scored in context and
        then on its own with the same n-grams, and hashing them costs more than the dot product).
        """
        cache = self._gram_logits(texts, {} if grams is None else grams)
        logits = (
            embeddings.astype(np.float64) @ self.coef[: self.embedding_dim]
            + np.array([cache[t] for t in texts], dtype=np.float64)
            + self.intercept
        )
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)

    def _gram_logits(self, texts: Sequence[str], cache: dict[str, float]) -> dict[str, float]:
        """``cache`` with the n-gram part of the logit of every text in ``texts`` (one hashing
        pass for those it lacks)."""
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            gram_logits = self._vectorizer.transform(todo) @ self.coef[self.embedding_dim :]
            cache.update(zip(todo, gram_logits.tolist(), strict=True))
        return cache

    def score_many(
        self,
        texts: Sequence[str],
        encoder: CachedEncoder,
        *,
        threshold: float | None = None,
        floor: float = SEGMENT_FLOOR,
        vectors: npt.NDArray[np.float32] | None = None,
        in_context: Sequence[npt.NDArray[np.float32]] | None = None,
    ) -> list[float]:
        """P(attack) of each text: the max over the whole text and its sentences.

        Sentences are scored only where they can change the verdict: when the whole text scores
        between ``floor`` and ``threshold``, or when it has more than :data:`ALWAYS_SEGMENT`
        sentences (an injection buried in a long text dilutes the whole-text score). Most
        messages are then one encoder pass. ``floor=0`` always scores the sentences (documents).

        ``vectors`` are the texts' embeddings when the caller already has them from ``encoder``'s
        own model (ingestion's index vectors), so the whole texts are not encoded twice.
        ``in_context`` holds, per text, one in-context vector per :func:`segments` part (a NaN row
        where the part's tokens were truncated away); then only the parts that score at least
        :data:`CONTEXT_GATE` in context, or have no in-context vector, are encoded on their own.
        """
        if not texts:
            return []
        cut = self.threshold if threshold is None else threshold
        if vectors is None:
            vectors = encoder.encode(texts)
        elif len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} texts")
        grams: dict[str, float] = {}
        best = [float(p) for p in self.probabilities(vectors, texts, grams)]
        chosen = [
            (i, parts)
            for i, text in enumerate(texts)
            if (parts := segments(text)) and (len(parts) > ALWAYS_SEGMENT or floor <= best[i] < cut)
        ]
        self._gram_logits([part for _, parts in chosen for part in parts], grams)
        owners: list[int] = []
        units: list[str] = []
        for i, parts in chosen:
            if in_context is not None and len(in_context[i]) == len(parts):
                parts = self._worth_encoding(parts, in_context[i], grams)
            owners.extend([i] * len(parts))
            units.extend(parts)
        if units:
            probs = self.probabilities(encoder.encode(units), units, grams)
            for owner, prob in zip(owners, probs, strict=True):
                best[owner] = max(best[owner], float(prob))
        return best

    def _worth_encoding(
        self, parts: list[str], in_context: npt.NDArray[np.float32], grams: dict[str, float]
    ) -> list[str]:
        """The parts whose in-context score passes :data:`CONTEXT_GATE` (or that have none)."""
        known: npt.NDArray[np.bool_] = np.asarray(~np.isnan(in_context).any(axis=1))
        keep: npt.NDArray[np.bool_] = ~known
        if known.any():
            probs = self.probabilities(
                in_context[known], [p for p, k in zip(parts, known, strict=True) if k], grams
            )
            keep[np.flatnonzero(known)] = probs >= CONTEXT_GATE
        return [p for p, k in zip(parts, keep, strict=True) if k]

    def score(
        self,
        text: str,
        encoder: CachedEncoder,
        *,
        threshold: float | None = None,
        floor: float = SEGMENT_FLOOR,
    ) -> float:
        """P(attack) of one text (see :meth:`score_many`)."""
        return self.score_many([text], encoder, threshold=threshold, floor=floor)[0]

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable document; hashed weights are stored sparsely."""
        dim = self.embedding_dim
        grams = self.coef[dim:]
        nz = np.flatnonzero(np.abs(grams) > 1e-6)
        return {
            "format": FORMAT,
            "encoder": self.encoder_name,
            "embedding_dim": dim,
            "hashing": {
                "n_features": self.hashing.n_features,
                "ngram_min": self.hashing.ngram_min,
                "ngram_max": self.hashing.ngram_max,
                "analyzer": "char_wb",
            },
            "threshold": round(self.threshold, 6),
            "intercept": float(self.intercept),
            "embedding_coef": [round(float(w), 6) for w in self.coef[:dim]],
            "ngram_coef": {str(int(i)): round(float(grams[i]), 6) for i in nz},
            "metrics": self.metrics,
        }

    def save(self, path: Path) -> Path:
        """Write the model file (parents created) and return its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> InjectionClassifier:
        """Read a model file written by :meth:`save`; ``ValueError`` if it is not one."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read injection classifier {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        spec = HashingSpec(
            n_features=int(doc["hashing"]["n_features"]),
            ngram_min=int(doc["hashing"]["ngram_min"]),
            ngram_max=int(doc["hashing"]["ngram_max"]),
        )
        dim = int(doc["embedding_dim"])
        coef = np.zeros(dim + spec.n_features, dtype=np.float64)
        coef[:dim] = np.asarray(doc["embedding_coef"], dtype=np.float64)
        for index, weight in doc["ngram_coef"].items():
            coef[dim + int(index)] = float(weight)
        return cls(
            coef=coef,
            intercept=float(doc["intercept"]),
            threshold=float(doc["threshold"]),
            hashing=spec,
            embedding_dim=dim,
            encoder_name=str(doc.get("encoder", MINILM_NAME)),
            metrics=dict(doc.get("metrics", {})),
        )
