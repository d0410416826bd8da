"""Indirect prompt injection in documents: score chunks at ingestion, neutralise them at retrieval.

A retrieved passage is data, never instructions. :class:`InjectionScanner` gives ingestion a
``score_chunk(text) -> float`` and ``flagged(...)`` to store in the chunk payload (flag, do not drop
silently), and gives the retrieval-time context guard :meth:`InjectionScanner.neutralise`, which
replaces the instruction-like sentences of a chunk with a visible marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ragd.guardrails.injection_classifier import InjectionClassifier, segment_spans, segments
from ragd.guardrails.injection_rules import match_rules
from ragd.guardrails.text_encoder import CachedEncoder
from ragd.retrieval.base import SpanPoolingEmbedder
from ragd.retrieval.sentences import REMOVED_MARKER as REMOVED_MARKER  # defined with the splitter

#: Chunks are long; score at most this many characters from each end.
MAX_CHUNK_CHARS = 6000


@dataclass(frozen=True)
class ChunkScore:
    """The injection score of a chunk and the sentences that carry it."""

    score: float
    flagged: bool
    rules: tuple[str, ...]
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class SharedPass:
    """What :meth:`InjectionScanner.embed_and_score` got from one encoder pass."""

    vectors: npt.NDArray[np.float32]
    scores: list[float]
    #: Per text, one in-context vector per requested extra span (None: the embedder cannot pool).
    extra: list[npt.NDArray[np.float32]] | None = None


class InjectionScanner:
    """Scores text for injected instructions with the trained classifier plus the rules."""

    def __init__(
        self,
        classifier: InjectionClassifier,
        encoder: CachedEncoder,
        threshold: float | None = None,
        context_threshold: float | None = None,
    ) -> None:
        self.classifier = classifier
        self.encoder = encoder
        self.threshold = classifier.threshold if threshold is None else threshold
        #: Where one sentence of a retrieved chunk is removed (:meth:`neutralise`).
        self.context_threshold = self.threshold if context_threshold is None else context_threshold

    @staticmethod
    def _clip(text: str) -> str:
        if len(text) <= MAX_CHUNK_CHARS:
            return text
        half = MAX_CHUNK_CHARS // 2
        return text[:half] + "\n" + text[-half:]

    def score_chunk(self, text: str) -> float:
        """P(the chunk carries injected instructions): 1.0 on a rule hit, else the classifier's."""
        clipped = self._clip(text)
        if match_rules(clipped):
            return 1.0
        return self.classifier.score(clipped, self.encoder, floor=0.0)

    def score_chunks(self, texts: Sequence[str]) -> list[float]:
        """:meth:`score_chunk` for many chunks, encoded in one batch."""
        clipped = [self._clip(t) for t in texts]
        scores = self.classifier.score_many(clipped, self.encoder, floor=0.0)
        return self._with_rules(clipped, scores)

    def embed_and_score(
        self,
        texts: Sequence[str],
        embedder: object,
        extra_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> SharedPass | None:
        """``embedder``'s vectors of ``texts`` and their scores, sharing one encoder pass.

        Only when ``embedder`` is this scanner's own encoder model (ingestion's default: the
        packaged MiniLM at fp32): the whole-chunk vectors are then the index vectors, and an
        embedder that pools sentence spans in context (ONNX) also tells which sentences are worth
        encoding on their own, and pools the caller's ``extra_spans`` (one list per text) from the
        same pass. None when the work cannot be shared (another model, int8, a chunk long enough
        to be clipped): the caller embeds and calls :meth:`score_chunks`.
        """
        if self.encoder.embedder is not embedder or any(len(t) > MAX_CHUNK_CHARS for t in texts):
            return None
        in_context: list[npt.NDArray[np.float32]] | None = None
        extra: list[npt.NDArray[np.float32]] | None = None
        if isinstance(embedder, SpanPoolingEmbedder):
            own = [segment_spans(t) for t in texts]
            asked = [list(s) for s in extra_spans] if extra_spans is not None else [[] for _ in texts]
            vectors, pieces = embedder.embed_with_spans(
                texts, [o + a for o, a in zip(own, asked, strict=True)]
            )
            in_context = [p[: len(o)] for p, o in zip(pieces, own, strict=True)]
            if extra_spans is not None:
                extra = [p[len(o) :] for p, o in zip(pieces, own, strict=True)]
        else:
            vectors = self.encoder.embedder.embed_documents(texts)
        scores = self.classifier.score_many(
            texts, self.encoder, floor=0.0, vectors=vectors, in_context=in_context
        )
        return SharedPass(vectors, self._with_rules(texts, scores), extra)

    @staticmethod
    def _with_rules(texts: Sequence[str], scores: list[float]) -> list[float]:
        return [1.0 if match_rules(t) else s for t, s in zip(texts, scores, strict=True)]

    def flagged(self, text_or_score: str | float) -> bool:
        """Whether a chunk (or its score) is over the threshold."""
        score = self.score_chunk(text_or_score) if isinstance(text_or_score, str) else float(text_or_score)
        return score >= self.threshold

    def _units(self, text: str) -> tuple[str, list[str]]:
        """The clipped text and the units scored on their own: its sentences, or itself."""
        clipped = self._clip(text)
        return clipped, segments(clipped) or [clipped]

    def prepare_context(self, chunks: Sequence[str]) -> None:
        """Encode, in one batch, every sentence :meth:`neutralise` will score for ``chunks``."""
        self.encoder.encode([unit for chunk in chunks for unit in self._units(chunk)[1]])

    def inspect(self, text: str, *, threshold: float | None = None, by_sentence: bool = False) -> ChunkScore:
        """Score plus the offending sentences (for the API and for neutralising).

        By default a chunk is flagged when its whole-text score or one sentence's reaches
        ``threshold``. ``by_sentence`` judges the sentences alone (and the rules): a chunk whose
        sentences all pass is not flagged on a high whole-text score.
        """
        cut = self.threshold if threshold is None else threshold
        clipped, units = self._units(text)
        probs = self.classifier.score_many(units, self.encoder, floor=0.0)
        bad = [u for u, p in zip(units, probs, strict=True) if p >= cut or match_rules(u)]
        rules = tuple(sorted({hit.rule for hit in match_rules(clipped)}))
        if by_sentence:
            score = 1.0 if rules else max(probs)
            flagged = bool(bad or rules)
        else:
            score = 1.0 if rules else max([*probs, self.classifier.score(clipped, self.encoder, floor=0.0)])
            flagged = score >= cut
        return ChunkScore(score=score, flagged=flagged, rules=rules, sentences=tuple(bad))

    def neutralise(self, text: str) -> tuple[str, ChunkScore]:
        """``text`` with its instruction-like sentences replaced by a marker, and the score.

        Sentences are judged one by one at :attr:`context_threshold`, so an injected sentence is
        never diluted by the text around it. The whole-text score decides nothing here: on
        encyclopedic prose it is often high while no sentence is. Measured on the 1,000 HotpotQA
        dev100 paragraphs, judging the whole text as well flagged 159 and blanked 54 whole; by
        sentence, 105 are flagged and only one, a one-sentence paragraph, is blanked whole. Of
        152 held-out attacks, 3 were caught by the whole-text score alone.
        """
        found = self.inspect(text, threshold=self.context_threshold, by_sentence=True)
        if not found.flagged:
            return text, found
        cleaned = text
        for sentence in found.sentences:
            cleaned = cleaned.replace(sentence, REMOVED_MARKER)
        if cleaned == text:  # a rule hit that spans sentences (or a sentence not located)
            cleaned = REMOVED_MARKER
        return cleaned, found
