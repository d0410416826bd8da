"""Title-aware, token-bounded chunking with overlap.

Chunks never cross a section (a new title starts a new chunk), never exceed the embedder's token
limit (counted with the embedder's own word-piece tokenizer, so nothing is silently truncated at
embedding time), overlap by a few tokens inside a section, and keep a table whole when it fits.
Continuation chunks of a section start with the section title, so each chunk says what it is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ragd.ingestion.parsers import ParsedElement

#: Bump when the same elements would chunk differently: cached evaluation indexes are keyed by it.
CHUNKING_VERSION = 2
#: Text longer than this is tokenized in pieces, bounding tokenizer memory on hostile input.
_TOKENIZE_PIECE_CHARS = 200_000


class Tokenizer(Protocol):
    """Character spans of the word pieces of a text (special tokens excluded)."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` character offsets of each token of ``text``."""
        ...


class WordPieceTokenizer:
    """A Hugging Face ``tokenizer.json`` (fast tokenizer), with truncation and padding off."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(tokenizer_json))
        self._tok.no_truncation()
        self._tok.no_padding()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for offset, piece in _pieces(text):
            enc = self._tok.encode(piece, add_special_tokens=False)
            spans.extend((offset + s, offset + e) for s, e in enc.offsets)
        return spans

    def count(self, text: str) -> int:
        """Number of word pieces in ``text``."""
        return len(self.token_spans(text))


def _pieces(text: str) -> list[tuple[int, str]]:
    """Split ``text`` at whitespace into pieces of at most ~:data:`_TOKENIZE_PIECE_CHARS`."""
    out: list[tuple[int, str]] = []
    start = 0
    while len(text) - start > _TOKENIZE_PIECE_CHARS:
        cut = text.rfind(" ", start + _TOKENIZE_PIECE_CHARS // 2, start + _TOKENIZE_PIECE_CHARS)
        cut = cut if cut > start else start + _TOKENIZE_PIECE_CHARS
        out.append((start, text[start:cut]))
        start = cut
    out.append((start, text[start:]))
    return out


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document, ready to embed."""

    index: int
    text: str
    section: str | None
    page: int | None
    kind: str  # "text" | "table"
    tokens: int


@dataclass
class _Piece:
    text: str
    tokens: int
    page: int | None
    is_table: bool


class Chunker:
    """Pack parsed elements into chunks of at most ``max_tokens`` word pieces."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, overlap_tokens: int) -> None:
        if max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap_tokens = max(0, min(overlap_tokens, max_tokens // 4))

    def chunk(self, elements: Sequence[ParsedElement]) -> list[Chunk]:
        """Chunk a document's elements, in order."""
        out: list[Chunk] = []
        groups = _sections(elements)
        lead = self._lead_title(elements)
        if lead is not None:
            section, _, group = groups[0]
            groups[0] = (section, lead, group)
        for section, title, group in groups:
            self._chunk_section(section, title, group, out)
        return out

    def _lead_title(self, elements: Sequence[ParsedElement]) -> str | None:
        """A document's first line as its title, when the parser found no title at all.

        A plain-text paper or note often opens with its title on a line of its own, which
        ``unstructured`` reads as narrative text when it ends with a full stop. Continuation
        chunks then repeat it, as they repeat a real title: a chunk from the middle of an
        abstract still says what the document is about.
        """
        if len(elements) < 2 or any(el.category == "Title" for el in elements):
            return None
        first = elements[0]
        text = first.text.strip()
        if not text or "\n" in text or first.category == "Table" or first.section != elements[1].section:
            return None
        return text if len(self.tokenizer.token_spans(text)) <= self.max_tokens // 8 else None

    def _chunk_section(
        self, section: str | None, title: str | None, group: list[ParsedElement], out: list[Chunk]
    ) -> None:
        # A title over a quarter of the chunk is not repeated (it would crowd out the text).
        title_tokens = len(self.tokenizer.token_spans(title)) if title else 0
        header, header_tokens = (
            (title, title_tokens) if title and title_tokens <= self.max_tokens // 4 else ("", 0)
        )
        buf: list[_Piece] = []
        started = False  # a chunk of this section was emitted (later ones repeat the header)

        def emit(pieces: list[_Piece], kind: str) -> None:
            nonlocal started
            if not pieces:
                return
            body = "\n\n".join(p.text for p in pieces)
            tokens = sum(p.tokens for p in pieces)
            if started and header and not body.startswith(header):
                body, tokens = f"{header}\n\n{body}", tokens + header_tokens
            page = next((p.page for p in pieces if p.page is not None), None)
            out.append(Chunk(len(out), body, section, page, kind, tokens))
            started = True

        def budget() -> int:
            # Continuation chunks get the header prepended; the first one holds the title itself.
            return self.max_tokens - (header_tokens if started else 0)

        for el in group:
            spans = self.tokenizer.token_spans(el.text)
            piece = _Piece(el.text, len(spans), el.page, el.category == "Table")
            used = sum(p.tokens for p in buf)
            if piece.is_table and piece.tokens <= self.max_tokens - header_tokens:
                if used + piece.tokens > budget():
                    emit(buf, "text")
                    buf = []
                emit([*buf, piece], "table" if not buf else "text")
                buf = []
                continue
            if used + piece.tokens <= budget():
                buf.append(piece)
                continue
            room = budget() - used
            if buf and piece.tokens > self.max_tokens - header_tokens and room >= self.max_tokens // 4:
                # Over the limit alone, after a short lead (a title line, an opening sentence):
                # its first window fills the lead's chunk instead of leaving the lead a chunk of
                # its own, which says too little to be found.
                windows = self._windows(el.text, spans, self.max_tokens - header_tokens, el.page, first=room)
                emit([*buf, windows[0]], "text")
                buf = []
                for window in windows[1:]:
                    emit([window], "table" if piece.is_table else "text")
                continue
            emit(buf, "text")
            tail = self._overlap(buf)
            buf = []
            if piece.tokens + (tail.tokens if tail else 0) <= self.max_tokens - header_tokens:
                buf = [p for p in (tail, piece) if p is not None]
                continue
            # The element alone is over the limit: slide a window over its tokens.
            for window in self._windows(el.text, spans, self.max_tokens - header_tokens, el.page):
                emit([window], "table" if piece.is_table else "text")
        emit(buf, "text")

    def _overlap(self, buf: list[_Piece]) -> _Piece | None:
        """The last ``overlap_tokens`` of the previous chunk, cut at a word start."""
        if not buf or self.overlap_tokens == 0 or buf[-1].is_table:
            return None
        last = buf[-1]
        spans = self.tokenizer.token_spans(last.text)
        if len(spans) <= self.overlap_tokens:
            return None
        start = _word_start(last.text, spans, len(spans) - self.overlap_tokens)
        text = last.text[spans[start][0] :]
        return _Piece(text, len(spans) - start, last.page, False)

    def _windows(
        self, text: str, spans: list[tuple[int, int]], size: int, page: int | None, first: int | None = None
    ) -> list[_Piece]:
        """Token windows of ``size`` (the first of ``first``, if given) over one long element,
        overlapping, cut at word starts."""
        out: list[_Piece] = []
        n, i = len(spans), 0
        while True:
            width = first if first is not None and not out else size
            end = min(n, i + width)
            if end < n:
                cut = _word_start(text, spans, end)
                end = cut if cut > i + width // 2 else end
            out.append(_Piece(text[spans[i][0] : spans[end - 1][1]], end - i, page, False))
            if end >= n:
                return out
            nxt = max(i + 1, end - self.overlap_tokens)
            start = _word_start(text, spans, nxt)
            i = start if start > i else nxt


def _word_start(text: str, spans: list[tuple[int, int]], i: int) -> int:
    """The index of the first token of the word that token ``i`` belongs to."""
    j = i
    while j > 0 and j > i - 16 and spans[j][0] == spans[j - 1][1] and not text[spans[j][0]].isspace():
        j -= 1
    return j


def _sections(
    elements: Sequence[ParsedElement],
) -> list[tuple[str | None, str | None, list[ParsedElement]]]:
    """Group consecutive elements by section; a title opens a new group."""
    groups: list[tuple[str | None, str | None, list[ParsedElement]]] = []
    for el in elements:
        if el.category == "Title" or not groups or groups[-1][0] != el.section:
            title = el.text if el.category == "Title" else None
            groups.append((el.section, title, []))
        groups[-1][2].append(el)
    return groups
