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
        """The feature matrix of ``texts`` given their embeddings."""
        grams = self._vectorizer.transform(list(texts))
        return hstack([csr_matrix(embeddings.astype(np.float64)), grams]).tocsr()

    def probabilities(
        self, embeddings: npt.NDArray[np.float32], texts: Sequence[str]
    ) -> npt.NDArray[np.float64]:
        """P(attack) of each text (no segment max)."""
        logits = self.features(embeddings, texts) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)

    def score_many(
        self,
        texts: Sequence[str],
        encoder: CachedEncoder,
        *,
        threshold: float | None = None,
        floor: float = SEGMENT_FLOOR,
    ) -> list[float]:
        """P(attack) of each text: the max over the whole text and its sentences.

        Sentences are scored only where they can change the verdict: when the whole text scores
        between ``floor`` and ``threshold``, or when it has more than :data:`ALWAYS_SEGMENT`
        sentences (an injection buried in a long text dilutes the whole-text score). Most
        messages are then one encoder pass. ``floor=0`` always scores the sentences (documents).
        """
        if not texts:
            return []
        cut = self.threshold if threshold is None else threshold
        best = [float(p) for p in self.probabilities(encoder.encode(texts), texts)]
        owners: list[int] = []
        units: list[str] = []
        for i, text in enumerate(texts):
            parts = segments(text)
            if parts and (len(parts) > ALWAYS_SEGMENT or floor <= best[i] < cut):
                owners.extend([i] * len(parts))
                units.extend(parts)
        if units:
            for owner, prob in zip(owners, self.probabilities(encoder.encode(units), units), strict=True):
                best[owner] = max(best[owner], float(prob))
        return best

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
