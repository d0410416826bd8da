"""Small files of every supported type, generated in the tests (nothing checked in)."""

from __future__ import annotations

import io
import zipfile


def pdf(pages: list[list[str]]) -> bytes:
    """A minimal PDF with a text layer (Helvetica), one block of lines per page."""
    objs: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        body = ["BT /F1 12 Tf 72 720 Td 16 TL"]
        for ln in lines:
            esc = ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            body.append(f"({esc}) Tj T* T*")
        body.append("ET")
        stream = "\n".join(body).encode("latin-1")
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for k, obj in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(f"{k} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def docx() -> bytes:
    import docx as python_docx

    d = python_docx.Document()
    d.add_heading("Safety Manual", 0)
    d.add_heading("Protective Equipment", 1)
    d.add_paragraph("Always wear goggles in the laboratory. Accidents happen when people are careless.")
    t = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Item", "Quantity"), ("Goggles", "4"), ("Gloves", "12")]):
        t.cell(r, 0).text, t.cell(r, 1).text = a, b
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def pptx() -> bytes:
    from pptx import Presentation

    p = Presentation()
    for title, body in [
        ("Quarterly Review", "Revenue grew by ten percent this quarter."),
        ("Outlook", "We expect steady growth in the coming year."),
    ]:
        s = p.slides.add_slide(p.slide_layouts[1])
        s.shapes.title.text = title
        s.placeholders[1].text = body
    buf = io.BytesIO()
    p.save(buf)
    return buf.getvalue()


def xlsx() -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Prices"
    for row in [["fruit", "price"], ["apple", 3], ["pear", 4], ["quince", 9]]:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


HTML = (
    b"<!DOCTYPE html><html><head><title>Garden</title></head><body><h1>Gardening</h1>"
    b"<p>Tomatoes need full sun and regular watering to thrive.</p><h2>Pests</h2>"
    b"<p>Aphids can be removed with a spray of soapy water.</p></body></html>"
)
MARKDOWN = (
    b"# Cooking\n\nBoil the pasta for nine minutes in salted water.\n\n## Sauce\n\n"
    b"Simmer the tomatoes with garlic and olive oil for twenty minutes.\n"
)
TEXT = b"The ocean covers most of the planet. Waves are driven by the wind.\n\nTides are driven by the moon."
CSV = b"city,country,population\nLisbon,Portugal,545000\nOslo,Norway,709000\nQuito,Ecuador,2800000\n"
EML = (
    b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Meeting notes\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"The meeting moved to Tuesday at noon. Please bring the budget report.\r\n"
)


def zip_bomb_docx(expanded: int = 600 * 1024 * 1024) -> bytes:
    """A DOCX-shaped archive whose one entry expands to ``expanded`` bytes of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(expanded // len(block)):
                member.write(block)
    return buf.getvalue()


def every_type() -> dict[str, bytes]:
    """One small file of every supported type, by file name."""
    return {
        "report.pdf": pdf(
            [
                ["Photosynthesis", "Plants turn light into sugar using chlorophyll."],
                ["Respiration", "Cells release energy from sugar with oxygen."],
            ]
        ),
        "manual.docx": docx(),
        "review.pptx": pptx(),
        "prices.xlsx": xlsx(),
        "garden.html": HTML,
        "cooking.md": MARKDOWN,
        "ocean.txt": TEXT,
        "cities.csv": CSV,
        "meeting.eml": EML,
    }
