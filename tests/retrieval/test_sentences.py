"""Sentence spans and the packed sentence vectors ingestion stores for the agent."""

from __future__ import annotations

import base64
import itertools
import re

import numpy as np
import pytest

from ragd.retrieval.sentences import (
    PAYLOAD_KEY,
    REMOVED_MARKER,
    pack_sentence_vectors,
    sentence_payloads,
    sentence_spans,
    split_sentences,
    stored_sentence_vectors,
    unpack_sentence_vectors,
)

DIM = 384


def _unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "text",
    [
        "Kiss and Tell\n\nKiss and Tell is a 1945 film.  It stars   Shirley Temple.\nIt was a hit!",
        "# Heading\n\nFirst   sentence here. Second\tone (with tabs).\n# Next\nThird one? Yes.",
        f"Before it. {REMOVED_MARKER} After the marker. Café, naïve and 東京 are words.",
        "Dr. Henry J. Kaiser built ships. He was born in 1882.",
        "",
        "   \n\n  ",
        "no stop at all",
        "a" * 5000 + ". " + "B sentence two.",
    ],
)
def test_spans_locate_every_sentence_the_splitter_finds(text: str) -> None:
    spans = sentence_spans(text)
    assert spans is not None
    sentences = split_sentences(text)
    assert len(spans) == len(sentences)
    for (start, end), sentence in zip(spans, sentences, strict=True):
        # The span is the sentence with the text's own whitespace between its words.
        assert " ".join(text[start:end].split()) == sentence
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # in order, no overlap


def test_repeated_sentences_get_their_own_spans() -> None:
    text = "It rained. It rained. Then it stopped."
    assert sentence_spans(text) == [(0, 10), (11, 21), (22, 38)]


def test_packed_vectors_round_trip_to_within_int8_precision() -> None:
    rows = _unit_rows(7)
    data = pack_sentence_vectors(rows)
    assert data is not None and len(base64.b64decode(data)) == 7 * (DIM + 4)
    back = unpack_sentence_vectors(data, DIM)
    assert back is not None and back.shape == rows.shape
    cosines = np.sum(back * rows, axis=1)
    assert cosines.min() > 0.999
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)


def test_rows_that_cannot_be_packed_give_none() -> None:
    rows = _unit_rows(3)
    rows[1, 5] = np.nan  # a sentence the encoder truncated away
    assert pack_sentence_vectors(rows) is None
    assert pack_sentence_vectors(np.zeros((0, DIM), dtype=np.float32)) is None
    assert pack_sentence_vectors(np.ones(DIM, dtype=np.float32)) is None  # not a matrix
    assert sentence_payloads("m", None, 2) == [None, None]
    assert sentence_payloads("m", [rows, _unit_rows(2)], 2)[0] is None


@pytest.mark.parametrize(
    "data",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"\x01\x02\x03").decode(),  # not a whole row
        base64.b64encode(bytes(DIM + 4)).decode(),  # a zero scale: a zero row
        base64.b64encode(np.full(DIM + 4, 127, dtype=np.int8).tobytes()).decode() * 3,  # padding inside
        "A" * 1_000_000,
    ],
)
def test_malformed_data_unpacks_to_none(data: str) -> None:
    assert unpack_sentence_vectors(data, DIM) is None


def test_stored_vectors_are_used_only_for_their_model_and_text() -> None:
    text = "Alpha is a letter. Beta follows it. Gamma is third."
    rows = _unit_rows(3, seed=1)
    (stored,) = sentence_payloads("minilm", [rows], 1)
    payload = {"text": text, PAYLOAD_KEY: stored}
    found = stored_sentence_vectors(text, payload, "minilm", DIM)
    assert list(found) == split_sentences(text)
    assert float(found["Beta follows it."] @ rows[1]) > 0.999
    assert stored_sentence_vectors(text, payload, "another-model", DIM) == {}
    # The context guard rewrote the passage: the stored rows are not this text's.
    rewritten = re.sub("Beta follows it.", REMOVED_MARKER, text)
    assert stored_sentence_vectors(rewritten, payload, "minilm", DIM) == {}
    # Rows that do not match the sentences, or a payload that is not ragd's, are ignored.
    (two,) = sentence_payloads("minilm", [rows[:2]], 1)
    assert stored_sentence_vectors(text, {"text": text, PAYLOAD_KEY: two}, "minilm", DIM) == {}
    for hostile in ("junk", {"model": "minilm"}, {"model": "minilm", "data": 5}, None):
        assert stored_sentence_vectors(text, {"text": text, PAYLOAD_KEY: hostile}, "minilm", DIM) == {}
