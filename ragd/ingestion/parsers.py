"""Parsing with ``unstructured``: bytes of a sniffed type -> elements with section and page.

Every partitioner runs offline: PDFs use the ``fast`` strategy (the text layer, no OCR or layout
model), and the spaCy model ``en_core_web_sm`` that unstructured's text classifier loads is
installed as a package by set-up (DESIGN.md §4), so nothing is downloaded.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragd.ingestion.sniffing import FileKind

log = logging.getLogger(__name__)

_TITLE = "Title"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
#: Longer paragraphs are never titles (unstructured's own title rule allows at most 12 words).
TITLE_MAX_CHARS = 160
_TABLE = "Table"
_SKIP = {"PageBreak", "Header", "Footer", "PageNumber", "Image", "Formula"}


class ParseError(Exception):
    """The file could not be parsed (corrupt, encrypted, no text): retrying cannot help."""


@dataclass(frozen=True)
class ParsedElement:
    """One block of a parsed document."""

    text: str
    category: str  # "Title", "NarrativeText", "ListItem", "Table", ...
    section: str | None
    page: int | None
    html: str | None = None  # tables: their HTML rendering


def decode_text(data: bytes) -> str:
    """Decode text of unknown encoding: UTF-8 (with or without BOM), else the best detected guess."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    import magic

    # libmagic's guess (the one of file(1)) is steadier on short Western text than statistical
    # detectors, which read a few accented letters as CJK; those decide for longer, other texts.
    guess = str(magic.Magic(mime_encoding=True).from_buffer(data[:65536])).lower()
    if guess in {"iso-8859-1", "us-ascii"}:
        return data.decode("cp1252", errors="replace")
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1024 * 1024]).best()
    return data.decode(best.encoding if best is not None else "cp1252", errors="replace")


def check_pdf(data: bytes) -> None:
    """Open the PDF structure with pypdf; raise :class:`ParseError` if it is corrupt or encrypted.

    pdfminer (under unstructured) logs and returns nothing for a truncated file, which would
    read as "no text"; this check names the real problem.
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ParseError("the PDF is encrypted")
        if len(reader.pages) == 0:
            raise ParseError("the PDF has no pages")
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError("the PDF is corrupt or truncated") from exc


def _partition(kind: FileKind, data: bytes) -> list[Any]:
    """Run the unstructured partitioner for ``kind`` (imports are lazy: they cost seconds)."""
    fn: Callable[..., list[Any]]
    if kind == FileKind.pdf:
        from unstructured.partition.pdf import partition_pdf

        check_pdf(data)
        return partition_pdf(file=io.BytesIO(data), strategy="fast", languages=["eng"])
    if kind == FileKind.docx:
        from unstructured.partition.docx import partition_docx as fn
    elif kind == FileKind.pptx:
        from unstructured.partition.pptx import partition_pptx as fn
    elif kind == FileKind.xlsx:
        from unstructured.partition.xlsx import partition_xlsx as fn
    elif kind == FileKind.eml:
        from unstructured.partition.email import partition_email as fn
    elif kind == FileKind.csv:
        from unstructured.partition.csv import partition_csv

        return partition_csv(file=io.BytesIO(decode_text(data).encode()), languages=["eng"])
    elif kind == FileKind.html:
        from unstructured.partition.html import partition_html

        return partition_html(text=decode_text(data), languages=["eng"])
    elif kind == FileKind.markdown:
        from unstructured.partition.md import partition_md

        return partition_md(text=decode_text(data), languages=["eng"])
    else:
        return partition_plain_text(decode_text(data))
    return fn(file=io.BytesIO(data), languages=["eng"])


def partition_plain_text(text: str) -> list[Any]:
    """Plain text as paragraphs; only short ones go through unstructured's classifier.

    unstructured classifies every paragraph with spaCy (~50 ms per abstract-sized paragraph,
    slower than embedding it). A paragraph of more than :data:`TITLE_MAX_CHARS` characters can
    only be narrative text, so only short ones, the candidate titles, are classified.
    """
    from unstructured.documents.elements import NarrativeText
    from unstructured.partition.text import element_from_text

    out: list[Any] = []
    for para in _PARAGRAPH_BREAK.split(text):
        para = " ".join(para.split())
        if not para:
            continue
        out.append(element_from_text(para) if len(para) <= TITLE_MAX_CHARS else NarrativeText(text=para))
    return out


def parse(data: bytes, kind: FileKind) -> list[ParsedElement]:
    """Partition ``data`` into elements; raise :class:`ParseError` on corrupt or empty input."""
    try:
        raw = _partition(kind, data)
    except (MemoryError, KeyboardInterrupt, ParseError):
        raise
    except Exception as exc:
        log.info("parse failed", extra={"kind": kind.value, "error": repr(exc)[:300]})
        raise ParseError(f"the {kind.value} file could not be parsed ({type(exc).__name__})") from exc
    elements = to_elements(raw)
    if not elements:
        hint = " (a scanned PDF without a text layer?)" if kind == FileKind.pdf else ""
        raise ParseError(f"no text could be extracted from the {kind.value} file{hint}")
    return elements


def to_elements(raw: list[Any]) -> list[ParsedElement]:
    """Map unstructured elements to :class:`ParsedElement`, tracking the current section path."""
    out: list[ParsedElement] = []
    titles: list[tuple[int, str]] = []  # (depth, title) stack
    for el in raw:
        category = type(el).__name__
        text = (el.text or "").strip()
        if category in _SKIP or not text:
            continue
        meta = el.metadata
        page = getattr(meta, "page_number", None)
        if category == _TITLE:
            depth = getattr(meta, "category_depth", None) or 0
            while titles and titles[-1][0] >= depth:
                titles.pop()
            titles.append((depth, text[:200]))
        section = " > ".join(t for _, t in titles) or None
        html = getattr(meta, "text_as_html", None) if category == _TABLE else None
        out.append(ParsedElement(text=text, category=category, section=section, page=page, html=html))
    return out
