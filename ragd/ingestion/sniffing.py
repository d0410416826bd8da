"""What a file really is: content sniffing, filename checks and container (zip-bomb) limits.

The type comes from the bytes (libmagic, the engine of ``file(1)``); the extension is only used
to tell apart text flavours that no byte signature can (Markdown versus plain text). A ``.pdf``
that is really a PNG is refused, a ``.docx`` that is really a PDF is parsed as a PDF.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from ragd.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

#: How much of a file libmagic looks at; signatures and text heuristics live at the start.
SNIFF_BYTES = 64 * 1024


class FileKind(StrEnum):
    """The formats ragd parses."""

    pdf = "pdf"
    docx = "docx"
    pptx = "pptx"
    xlsx = "xlsx"
    html = "html"
    markdown = "markdown"
    text = "text"
    csv = "csv"
    eml = "eml"


MIME_TYPES: dict[FileKind, str] = {
    FileKind.pdf: "application/pdf",
    FileKind.docx: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    FileKind.pptx: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    FileKind.xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    FileKind.html: "text/html",
    FileKind.markdown: "text/markdown",
    FileKind.text: "text/plain",
    FileKind.csv: "text/csv",
    FileKind.eml: "message/rfc822",
}

_BY_MIME = {mime: kind for kind, mime in MIME_TYPES.items()}
_BY_MIME.update({"application/xhtml+xml": FileKind.html, "text/xml": FileKind.text})
_ZIP_KINDS = {FileKind.docx, FileKind.pptx, FileKind.xlsx}
_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_TEXTUAL_MIMES = {"text/plain", "text/x-c", "text/x-script.python", "application/json", "text/x-makefile"}


@dataclass(frozen=True)
class ContainerLimits:
    """Bounds on what a zip container (DOCX, PPTX, XLSX) may expand to."""

    max_entries: int = 10_000
    max_total_bytes: int = 512 * 1024 * 1024
    max_ratio: float = 200.0


@dataclass(frozen=True)
class Sniffed:
    """The detected type of one file."""

    kind: FileKind
    mime_type: str
    declared_mismatch: bool = False  # the extension claimed another type


def check_filename(name: str | None) -> str:
    """Return a safe display name, or raise: no paths, no control characters, not empty."""
    if not name or not name.strip():
        raise BadRequest("the file has no name")
    if "/" in name or "\\" in name or "\x00" in name:
        raise BadRequest("file names may not contain path separators")
    if any(ord(c) < 32 for c in name) or name in {".", ".."}:
        raise BadRequest("the file name contains control characters")
    if len(name) > 255:
        raise BadRequest("the file name is longer than 255 characters")
    return name.strip()


def _magic_mime(head: bytes) -> str:
    import magic

    return str(magic.from_buffer(head, mime=True))


def _suffix_kind(name: str) -> FileKind | None:
    suffix = PurePosixPath(name).suffix.lower()
    table = {
        ".pdf": FileKind.pdf,
        ".docx": FileKind.docx,
        ".pptx": FileKind.pptx,
        ".xlsx": FileKind.xlsx,
        ".html": FileKind.html,
        ".htm": FileKind.html,
        ".txt": FileKind.text,
        ".csv": FileKind.csv,
        ".eml": FileKind.eml,
    }
    if suffix in _MARKDOWN_SUFFIXES:
        return FileKind.markdown
    return table.get(suffix)


def _looks_like_csv(head: bytes) -> bool:
    try:
        sample = head.decode("utf-8", errors="strict")[:8192]
    except UnicodeDecodeError:
        return False
    lines = [ln for ln in sample.splitlines()[:20] if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t")
    except csv.Error:
        return False
    widths = {len(row) for row in csv.reader(lines, dialect)}
    return len(widths) == 1 and widths.pop() > 1


def sniff(data: bytes, filename: str) -> Sniffed:
    """Detect the type of ``data``; raise :class:`UnsupportedMediaType` if ragd cannot parse it."""
    if not data:
        raise BadRequest("the file is empty")
    head = data[:SNIFF_BYTES]
    mime = _magic_mime(head)
    claimed = _suffix_kind(filename)
    kind = _BY_MIME.get(mime)
    if mime in _TEXTUAL_MIMES or (mime.startswith("text/") and kind is None):
        kind = FileKind.text
    if mime == "application/zip" or (kind in _ZIP_KINDS):
        kind = _ooxml_kind(data) or kind
    if kind == FileKind.text:
        # No byte signature separates Markdown from text, nor every CSV from prose: use the
        # claimed type among text flavours only, else look at the content.
        if claimed in {FileKind.markdown, FileKind.csv, FileKind.text}:
            kind = claimed if claimed != FileKind.csv or _looks_like_csv(head) else FileKind.text
        elif _looks_like_csv(head):
            kind = FileKind.csv
    if kind is None:
        raise UnsupportedMediaType(
            f"unsupported content type {mime}",
            details={"detected": mime, "supported": sorted(k.value for k in FileKind)},
        )
    mismatch = claimed is not None and claimed != kind
    return Sniffed(kind=kind, mime_type=MIME_TYPES[kind], declared_mismatch=mismatch)


def _ooxml_kind(data: bytes) -> FileKind | None:
    """Which Office Open XML document a zip is, from its part names (None if not one)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if "word/document.xml" in names:
        return FileKind.docx
    if "ppt/presentation.xml" in names:
        return FileKind.pptx
    if "xl/workbook.xml" in names:
        return FileKind.xlsx
    return None


def check_container(data: bytes, kind: FileKind, limits: ContainerLimits) -> None:
    """Refuse zip bombs before any parser opens the archive.

    Python's zipfile never returns more bytes than an entry's declared size (it fails the CRC
    check instead), so bounding the declared sizes bounds what parsing can expand to.
    """
    if kind not in _ZIP_KINDS:
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadRequest(f"the {kind.value} file is not a valid archive") from exc
    if len(infos) > limits.max_entries:
        raise PayloadTooLarge(f"the archive has {len(infos)} entries (limit {limits.max_entries})")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise PayloadTooLarge(
            f"the archive expands to {total} bytes (limit {limits.max_total_bytes}): refused as a zip bomb"
        )
    for info in infos:
        if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(1, info.compress_size):
            ratio = info.file_size // max(1, info.compress_size)
            raise PayloadTooLarge(
                f"archive entry {info.filename[:80]!r} compresses {ratio}:1: refused as a zip bomb"
            )
