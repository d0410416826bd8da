"""Sentences of a chunk, and their in-context vectors stored with it at ingestion.

The agent scores the sentences of retrieved chunks against the question to pick its evidence
(``ragd.agents.evidence``). Encoding those sentences at question time was most of the encoder
work before the first answer token; ingestion already runs every chunk through the encoder, and
pooling each sentence's token states from that pass (an in-context vector) costs nothing more.
So ingestion splits chunks with the same :func:`split_sentences` the agent uses, stores one
vector per sentence in the chunk's payload (int8, :func:`pack_sentence_vectors`) and the agent
reads them back (:func:`stored_sentence_vectors`) instead of encoding.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ragd.retrieval.base import Embedder, SpanPoolingEmbedder

#: What the context guard leaves where it removed an instruction-like sentence.
REMOVED_MARKER = "[instruction-like text removed by ragd]"

#: Just after a sentence's stop; a stop after a lone capital is an initial ("Henry J. Kaiser").
SENTENCE_STOP = r"(?<=[.!?])(?<!\b[A-Z]\.)"
#: A stop, then space and what starts a sentence.
_SENTENCE_END = re.compile(SENTENCE_STOP + r"\s+(?=[\"'“(A-Z0-9])")
_BLOCKS = re.compile(r"\n\s*\n|\n(?=#)")

#: The payload key of a chunk's sentence vectors: ``{"model": embedder name, "data": packed}``.
PAYLOAD_KEY = "sentence_vectors"


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a light splitter: chunks are prose; headings become sentences)."""
    out: list[str] = []
    # The context guard's marker stands where a sentence was removed and ends in "]", not a stop:
    # set it apart so the sentence after it survives on its own instead of being dropped with it.
    text = text.replace(REMOVED_MARKER, f"\n\n{REMOVED_MARKER}\n\n")
    for block in _BLOCKS.split(text):
        block = " ".join(block.split()).lstrip("# ")
        out += [s.strip() for s in _SENTENCE_END.split(block) if s.strip()]
    return out


def sentence_spans(text: str) -> list[tuple[int, int]] | None:
    """Character spans ``(start, end)`` in ``text`` of :func:`split_sentences`'s sentences, in
    order; None when one cannot be located (the splitter rewrites whitespace, so a sentence is
    found word by word, whatever whitespace stood between its words in ``text``)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in split_sentences(text):
        pattern = r"\s+".join(re.escape(word) for word in sentence.split())
        found = re.compile(pattern).search(text, cursor)
        if found is None:
            return None
        spans.append((found.start(), found.end()))
        cursor = found.end()
    return spans


def pack_sentence_vectors(rows: npt.NDArray[np.float32]) -> str | None:
    """``rows`` (one unit vector per sentence) as a compact string: per row a float32 scale and
    int8 values, base64 (388 bytes a row for 384 dimensions, a quarter of float32). None when a
    row is not finite (a sentence the encoder truncated away)."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or not rows.size or not np.isfinite(rows).all():
        return None
    scale = np.abs(rows).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    codes = np.round(rows / scale).astype(np.int8)
    blob = np.hstack([scale.astype("<f4").view(np.int8), codes])
    return base64.b64encode(blob.tobytes()).decode("ascii")


def unpack_sentence_vectors(data: str, dim: int) -> npt.NDArray[np.float32] | None:
    """The unit rows :func:`pack_sentence_vectors` packed, or None for data that is not such a
    pack of ``dim``-wide rows (a payload is never trusted to be well formed)."""
    try:
        raw = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.int8)
    except (binascii.Error, ValueError, TypeError):
        return None
    width = dim + 4
    if not raw.size or raw.size % width:
        return None
    blob = raw.reshape(-1, width)
    scale = blob[:, :4].copy().view("<f4").astype(np.float32)
    rows = blob[:, 4:].astype(np.float32) * scale
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.isfinite(rows).all() or (norms == 0).any():
        return None
    return np.asarray(rows / norms, dtype=np.float32)


def sentence_payloads(
    model: str, pieces: Sequence[npt.NDArray[np.float32]] | None, n: int
) -> list[dict[str, str] | None]:
    """The value stored under :data:`PAYLOAD_KEY` for each of ``n`` chunks, from the chunks'
    in-context sentence vectors (``pieces``, None when the embedder could not pool them); None
    for a chunk whose vectors cannot be packed."""
    if pieces is None:
        return [None] * n
    out: list[dict[str, str] | None] = []
    for rows in pieces:
        data = pack_sentence_vectors(rows) if len(rows) else None
        out.append(None if data is None else {"model": model, "data": data})
    return out


def stored_sentence_vectors(
    text: str, payload: Mapping[str, Any], model: str, dim: int
) -> dict[str, npt.NDArray[np.float32]]:
    """``{sentence: vector}`` for the sentences of ``text`` from the chunk's stored vectors.

    Empty unless the vectors were made by ``model`` for exactly this text: the payload's own
    ``text`` (the context guard may have rewritten the passage the agent holds) with as many
    rows as :func:`split_sentences` finds in it.
    """
    stored = payload.get(PAYLOAD_KEY)
    if not isinstance(stored, Mapping) or stored.get("model") != model or payload.get("text") != text:
        return {}
    data = stored.get("data")
    rows = unpack_sentence_vectors(data, dim) if isinstance(data, str) else None
    sentences = split_sentences(text)
    if rows is None or len(rows) != len(sentences):
        return {}
    return dict(zip(sentences, rows, strict=True))


def spans_for(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """:func:`sentence_spans` of each text (an empty list where they cannot be located)."""
    return [sentence_spans(t) or [] for t in texts]


def embed_with_sentences(
    embedder: Embedder, texts: Sequence[str]
) -> tuple[npt.NDArray[np.float32], list[dict[str, str] | None]]:
    """``embedder``'s vectors of ``texts`` and, from the same pass, each text's
    :data:`PAYLOAD_KEY` value (all None when the embedder cannot pool spans)."""
    if not isinstance(embedder, SpanPoolingEmbedder):
        return embedder.embed_documents(texts), [None] * len(texts)
    vectors, pieces = embedder.embed_with_spans(texts, spans_for(texts))
    return vectors, sentence_payloads(embedder.name, pieces, len(texts))
