"""The attachment types tierd accepts, told by the content's first bytes.

A declared media type is a claim; the bytes decide. A file whose first bytes say PNG, JPEG,
WebP, GIF, PDF or XLSX is that type whatever its name; declared as another accepted type it
is refused (an image declared as a PDF is a mistake worth saying). A CSV has no signature: it
is taken when it is declared as CSV, or named `.csv` with no better claim, and is text. Every
refusal lists what is accepted. Standard library only: the CLI uses `guess_media_type` to
label the files it sends.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACCEPTED",
    "ACCEPTED_TEXT",
    "GENERIC_TYPES",
    "Kind",
    "TypeRefused",
    "guess_media_type",
    "resolve_type",
    "sniff",
]

Kind = Literal["image", "pdf", "table"]

PNG, JPEG, WEBP, GIF = "image/png", "image/jpeg", "image/webp", "image/gif"
PDF = "application/pdf"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: Every accepted media type and its kind, in the order messages list them.
ACCEPTED: dict[str, Kind] = {
    PNG: "image",
    JPEG: "image",
    WEBP: "image",
    GIF: "image",
    PDF: "pdf",
    CSV: "table",
    XLSX: "table",
}
ACCEPTED_TEXT = (
    "PNG, JPEG, WebP and GIF images, PDF documents, CSV and XLSX spreadsheets "
    f"({', '.join(ACCEPTED)})"
)
#: Declared types that claim nothing: the content decides alone.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
#: Other names clients use for the accepted types.
_ALIASES = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
    "application/x-pdf": PDF,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "text/comma-separated-values": CSV,
}
#: Declared types a spreadsheet arrives with beside its own (browsers on Windows label a .csv
#: file as an Excel one): the content and the name decide.
_SPREADSHEET_LOOSE = frozenset({"application/vnd.ms-excel", "text/plain"})
_NAMES = {
    PNG: "a PNG image",
    JPEG: "a JPEG image",
    WEBP: "a WebP image",
    GIF: "a GIF image",
    PDF: "a PDF document",
    CSV: "CSV text",
    XLSX: "an XLSX workbook",
}


class TypeRefused(ValueError):
    """The content is not of an accepted type, or not of the type it was declared as."""


def _is_xlsx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False


def sniff(data: bytes) -> str | None:
    """The accepted type the content's first bytes say, or None (CSV has no signature)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    # PDF readers take the header anywhere in the first kilobyte (some tools prepend junk).
    if b"%PDF-" in data[:1024]:
        return PDF
    if data.startswith(b"PK\x03\x04") and _is_xlsx(data):
        return XLSX
    return None


def _declared(media_type: str) -> str:
    """A declared type without parameters, lower case, aliases resolved."""
    base = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _named_csv(name: str) -> bool:
    return name.lower().endswith(".csv")


@dataclass(frozen=True)
class Resolved:
    media_type: str
    kind: Kind


def resolve_type(name: str, declared: str, data: bytes) -> Resolved:
    """The attachment's media type and kind; raises TypeRefused saying why not."""
    claim = _declared(declared)
    found = sniff(data)
    if found is not None:
        loose = claim in _SPREADSHEET_LOOSE and found == XLSX
        if claim in GENERIC_TYPES or claim == found or loose:
            return Resolved(found, ACCEPTED[found])
        said = _NAMES.get(claim, claim)
        raise TypeRefused(f"declared as {said}, but its content is {_NAMES[found]}")
    if claim == CSV or (
        (claim in GENERIC_TYPES or claim in _SPREADSHEET_LOOSE) and _named_csv(name)
    ):
        return Resolved(CSV, "table")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise TypeRefused(
            "an Excel 97-2003 (.xls) workbook or another old Office file is not accepted: "
            f"save it as .xlsx; accepted: {ACCEPTED_TEXT}"
        )
    if claim in ACCEPTED:
        raise TypeRefused(f"declared as {_NAMES[claim]}, but its content is not one")
    what = f"type {claim!r}" if claim not in GENERIC_TYPES else "its content"
    raise TypeRefused(f"{what} is not accepted; accepted: {ACCEPTED_TEXT}")


def guess_media_type(name: str, data: bytes) -> str:
    """The media type to send for a file: from its content, else from its name (`.csv`);
    "application/octet-stream" when neither says (the daemon then refuses it, saying why)."""
    found = sniff(data)
    if found is not None:
        return found
    if _named_csv(name):
        return CSV
    return "application/octet-stream"
