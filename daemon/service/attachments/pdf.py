"""PDFs: the text of each page with its page number, and the pages without text as PNGs.

pypdf reads the text layer page by page ("--- page 3 ---" before each, so a model can cite
it). A page with no text (a scan, a drawing) is rendered by PDFium (pypdfium2) to a PNG, for
models that see images; a model that does not gets the planner's description instead. A file
either library cannot open is refused as unreadable, as is an encrypted one.

PDFium is not thread-safe: every use of it holds one lock, since submits run extraction on
worker threads. PNGs are written here from the raw RGB rows (zlib and struct): no image
library is needed for that.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PdfExtract", "PdfLimits", "PdfUnreadable", "encode_png", "extract_pdf"]

#: PDFium's one lock (see the module's docstring).
_PDFIUM = threading.Lock()
#: pypdf reports a damaged file through its logger too; the refusal already says it.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class PdfUnreadable(ValueError):
    """The PDF cannot be read (damaged, cut short, encrypted), or has too many pages."""


@dataclass(frozen=True)
class PdfLimits:
    max_pages: int
    max_rendered_pages: int
    render_dpi: int
    max_chars: int


@dataclass
class PdfExtract:
    pages: int
    text: str
    #: Pages with text, and pages without (1-based).
    text_pages: list[int] = field(default_factory=list)
    image_pages: list[int] = field(default_factory=list)
    #: (page, PNG) of the pages rendered for vision models.
    renders: list[tuple[int, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "text_pages": self.text_pages,
            "image_pages": self.image_pages,
            "rendered_pages": [page for page, _ in self.renders],
            "notes": self.notes,
        }

    def summary(self) -> str:
        words = [f"PDF, {self.pages} page{'s' * (self.pages != 1)}"]
        if self.image_pages:
            listed = ", ".join(str(p) for p in self.image_pages)
            words.append(f"without a text layer: page{'s' * (len(self.image_pages) > 1)} {listed}")
        return "; ".join([*words, *self.notes]) + "."


def encode_png(width: int, height: int, stride: int, rows: bytes) -> bytes:
    """A PNG (8-bit RGB) of `height` rows of `width` RGB pixels, `stride` bytes apart."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    line = width * 3
    raw = b"".join(b"\x00" + rows[y * stride : y * stride + line] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _page_texts(data: bytes, limits: PdfLimits) -> list[str]:
    # Imported here, on the worker thread that reads a PDF: pypdf and PDFium add about a
    # second of CPU to every daemon start, and most tasks carry no PDF.
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfUnreadable("an encrypted PDF is not accepted: send it without a password")
        count = len(reader.pages)
        if count > limits.max_pages:
            raise PdfUnreadable(
                f"{count} pages; at most {limits.max_pages} are accepted "
                "(attachments.pdf_max_pages)"
            )
        return [(page.extract_text() or "").strip() for page in reader.pages]
    except PdfUnreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise PdfUnreadable(f"not a readable PDF ({type(exc).__name__}: {exc})") from None


def _render(data: bytes, pages: list[int], dpi: int) -> list[tuple[int, bytes]]:
    """PNGs of `pages` (1-based). Raises PdfUnreadable when PDFium cannot open the file."""
    import pypdfium2 as pdfium  # see _page_texts

    rendered: list[tuple[int, bytes]] = []
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except Exception as exc:
            raise PdfUnreadable(f"not a readable PDF (PDFium: {exc})") from None
        try:
            for number in pages:
                page = document[number - 1]
                bitmap = page.render(scale=dpi / 72, rev_byteorder=True)
                raw = bytes(bitmap.buffer)
                png = encode_png(bitmap.width, bitmap.height, bitmap.stride, raw)
                rendered.append((number, png))
                bitmap.close()
                page.close()
        finally:
            document.close()
    return rendered


def extract_pdf(data: bytes, limits: PdfLimits) -> PdfExtract:
    """The text per page, and the pages without text rendered (up to the limit)."""
    texts = _page_texts(data, limits)
    result = PdfExtract(pages=len(texts), text="")
    if not texts:
        raise PdfUnreadable("a PDF without pages")
    parts: list[str] = []
    for number, text in enumerate(texts, start=1):
        (result.text_pages if text else result.image_pages).append(number)
        parts.append(f"--- page {number} ---\n{text or '(no text layer)'}")
    joined = "\n\n".join(parts)
    if len(joined) > limits.max_chars:
        joined = joined[: limits.max_chars]
        result.notes.append(
            f"text cut at {limits.max_chars} characters (attachments.text_max_chars)"
        )
    result.text = joined
    shown = result.image_pages[: limits.max_rendered_pages]
    if len(shown) < len(result.image_pages):
        result.notes.append(
            f"only the first {len(shown)} pages without text are rendered as images "
            "(attachments.pdf_max_rendered_pages)"
        )
    # Opened even when nothing is rendered: PDFium's refusal catches what pypdf forgave.
    result.renders = _render(data, shown, limits.render_dpi)
    return result
