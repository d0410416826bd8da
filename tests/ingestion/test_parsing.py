"""Sniffing, parsing (real unstructured, offline) and chunking of generated files of every type."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragd.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ragd.ingestion.chunker import Chunker, WordPieceTokenizer
from ragd.ingestion.parsers import ParsedElement, ParseError, parse
from ragd.ingestion.sniffing import ContainerLimits, FileKind, check_container, check_filename, sniff
from ragd.llm_serving.model_files import minilm_dir
from tests.ingestion import samples

EXPECTED = {
    "report.pdf": (FileKind.pdf, "chlorophyll"),
    "manual.docx": (FileKind.docx, "goggles"),
    "review.pptx": (FileKind.pptx, "revenue"),
    "prices.xlsx": (FileKind.xlsx, "quince"),
    "garden.html": (FileKind.html, "tomatoes"),
    "cooking.md": (FileKind.markdown, "pasta"),
    "ocean.txt": (FileKind.text, "tides"),
    "cities.csv": (FileKind.csv, "lisbon"),
    "meeting.eml": (FileKind.eml, "budget"),
}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return samples.every_type()


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(minilm_dir() / "tokenizer.json")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_type_is_sniffed_and_parsed_offline(files: dict[str, bytes], name: str) -> None:
    # pytest-socket forbids non-loopback connections: a download attempt would fail this test.
    kind, word = EXPECTED[name]
    sniffed = sniff(files[name], name)
    assert sniffed.kind == kind and not sniffed.declared_mismatch
    elements = parse(files[name], sniffed.kind)
    assert word in " ".join(e.text for e in elements).lower()


def test_sections_titles_and_pages_are_kept(files: dict[str, bytes]) -> None:
    pdf = parse(files["report.pdf"], FileKind.pdf)
    assert {e.page for e in pdf} == {1, 2}
    md = parse(files["cooking.md"], FileKind.markdown)
    simmer = next(e for e in md if "Simmer" in e.text)
    assert simmer.section == "Cooking > Sauce"
    pptx = parse(files["review.pptx"], FileKind.pptx)
    outlook = next(e for e in pptx if "steady growth" in e.text)
    assert outlook.section == "Outlook" and outlook.page == 2
    table = next(e for e in parse(files["manual.docx"], FileKind.docx) if e.category == "Table")
    assert table.html and "Gloves" in table.html


def test_the_bytes_decide_not_the_extension(files: dict[str, bytes]) -> None:
    assert sniff(files["report.pdf"], "notes.txt").kind == FileKind.pdf
    mislabelled = sniff(files["manual.docx"], "slides.pptx")
    assert mislabelled.kind == FileKind.docx and mislabelled.declared_mismatch
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    with pytest.raises(UnsupportedMediaType):
        sniff(png, "picture.pdf")
    with pytest.raises(UnsupportedMediaType):
        sniff(bytes(range(256)) * 8, "data.txt")
    assert sniff(samples.CSV, "cities.txt").kind == FileKind.csv  # the bytes say CSV
    assert sniff(samples.CSV, "noext").kind == FileKind.csv
    assert sniff(samples.TEXT, "fake.csv").kind == FileKind.text  # not tabular: not CSV


def test_empty_and_hostile_names() -> None:
    with pytest.raises(BadRequest):
        sniff(b"", "empty.txt")
    for bad in ["", "   ", "../etc/passwd", "a/b.txt", "c:\\x.txt", "nul\x00.txt", "x" * 300, "tab\t.txt"]:
        with pytest.raises(BadRequest):
            check_filename(bad)
    assert check_filename("résumé 2024.pdf") == "résumé 2024.pdf"


def test_zip_bomb_is_refused_before_parsing() -> None:
    bomb = samples.zip_bomb_docx()
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(PayloadTooLarge, match="zip bomb"):
        check_container(bomb, FileKind.docx, ContainerLimits())
    with pytest.raises(PayloadTooLarge):
        check_container(samples.docx(), FileKind.docx, ContainerLimits(max_entries=3))


def test_corrupt_and_textless_pdfs_fail_clearly(files: dict[str, bytes]) -> None:
    with pytest.raises(ParseError, match="corrupt"):
        parse(files["report.pdf"][:300], FileKind.pdf)
    with pytest.raises(ParseError, match="corrupt"):
        parse(b"%PDF-1.7\n" + b"garbage " * 100, FileKind.pdf)
    with pytest.raises(ParseError, match="no text"):
        parse(samples.pdf([[]]), FileKind.pdf)


def test_non_utf8_text_is_decoded() -> None:
    latin1 = "Crème brûlée is a French dessert with a caramel top.".encode("latin-1")
    kind = sniff(latin1, "dessert.txt").kind
    assert kind == FileKind.text
    assert "Crème brûlée" in parse(latin1, kind)[0].text


def test_huge_line_is_chunked_within_the_token_bound(tokenizer: WordPieceTokenizer) -> None:
    line = ("photosynthesis " * 60_000).encode()  # one 900 KB line
    elements = parse(line, sniff(line, "huge.txt").kind)
    chunks = Chunker(tokenizer, 254, 32).chunk(elements)
    assert len(chunks) > 100
    assert max(tokenizer.count(c.text) for c in chunks) <= 254


def E(
    text: str, category: str = "NarrativeText", section: str | None = "S", page: int | None = 1
) -> ParsedElement:
    return ParsedElement(text=text, category=category, section=section, page=page)


def test_chunks_are_title_aware_bounded_and_overlap(tokenizer: WordPieceTokenizer) -> None:
    sentence = "Chlorophyll absorbs red and blue light and reflects green light. "
    elements = [
        E("Introduction", "Title", "Introduction"),
        E("Plants make sugar from light.", section="Introduction"),
        E(sentence * 12, section="Introduction", page=2),
        E("Results", "Title", "Results", 3),
        E("Yield rose by a third.", section="Results", page=3),
    ]
    chunks = Chunker(tokenizer, 64, 8).chunk(elements)
    assert all(tokenizer.count(c.text) <= 64 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    intro = [c for c in chunks if c.section == "Introduction"]
    assert len(intro) >= 3 and all(c.text.startswith("Introduction") for c in intro)
    # Consecutive windows of the long paragraph share text (the overlap).
    a, b = intro[1].text.removeprefix("Introduction\n\n"), intro[2].text.removeprefix("Introduction\n\n")
    assert a.split()[-3:] == b.split()[:3] or a[-20:] in b
    results = [c for c in chunks if c.section == "Results"]
    assert len(results) == 1 and "Yield" in results[0].text and results[0].page == 3
    assert not any("Yield" in c.text for c in intro)  # never across sections


def test_a_plain_text_title_line_heads_every_chunk_and_is_never_a_chunk_alone(
    tokenizer: WordPieceTokenizer,
) -> None:
    """A paper as plain text: its title line ends with a full stop, so unstructured reads it as
    narrative text. The title shares the first chunk with the abstract's start, and later chunks
    repeat it, as they repeat a real title."""
    title = "Vitamin C deficiency causes scurvy in sailors."
    abstract = "Collagen synthesis needs ascorbate as a cofactor of prolyl hydroxylase. " * 30
    elements = parse(f"{title}\n\n{abstract}".encode(), FileKind.text)
    assert all(el.category != "Title" for el in elements)
    chunks = Chunker(tokenizer, 96, 16).chunk(elements)
    assert len(chunks) >= 3
    assert all(c.text.startswith(title) for c in chunks)
    assert all(c.text.strip() != title for c in chunks)
    assert all(tokenizer.count(c.text) <= 96 for c in chunks)
    assert "Collagen synthesis" in chunks[0].text
    # Nothing lost: every sentence of the abstract is in some chunk.
    assert "".join(c.text for c in chunks).count("prolyl hydroxylase") >= 30
    # A first line that is not short stays plain text (no header on later chunks).
    long_first = "Collagen synthesis needs ascorbate. " * 12
    plain = Chunker(tokenizer, 96, 16).chunk(parse(f"{long_first}\n\n{abstract}".encode(), FileKind.text))
    assert not all(c.text.startswith(long_first[:40]) for c in plain)


def test_tables_stay_whole_when_they_fit(tokenizer: WordPieceTokenizer) -> None:
    table = " ".join(f"row{i} value{i}" for i in range(20))
    elements = [E("Intro text. " * 10), E(table, "Table"), E("After the table.")]
    chunks = Chunker(tokenizer, 128, 16).chunk(elements)
    assert sum(table in c.text for c in chunks) == 1
    big = " ".join(f"row{i} value{i}" for i in range(300))
    split = Chunker(tokenizer, 128, 16).chunk([E(big, "Table")])
    assert len(split) > 1 and all(c.kind == "table" for c in split)


def test_minilm_tokenizer_file_exists() -> None:
    assert (Path(minilm_dir()) / "tokenizer.json").is_file()
