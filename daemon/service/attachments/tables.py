"""Spreadsheets (CSV, XLSX) as bounded text tables with sheet and cell references.

A model reads a table best as rows it can cite: each sheet becomes a header naming it and the
range shown, then one line per row, `| 7 | A7 value | B7 value |`, under a line of column
letters, so "C7" in an answer means the cell a person finds at C7. Bounded: at most
`attachments.table_max_rows` rows per sheet and `attachments.table_max_cells` cells in all,
each cell cut at CELL_CHARS; what is left out is said in the text. A file that does not parse
is refused as unreadable. openpyxl reads XLSX in read-only mode (values, not formulas); an XLSX
that unpacks to more than UNPACKED_FACTOR times `attachments.max_bytes` is refused before it
is parsed (a zip bomb).
"""

from __future__ import annotations

import csv
import datetime
import io
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CELL_CHARS", "TableExtract", "TableLimits", "TableUnreadable", "extract_table"]

#: Longest text kept of one cell.
CELL_CHARS = 300
#: How much larger than attachments.max_bytes an XLSX may unpack to.
UNPACKED_FACTOR = 50
#: openpyxl warns about styles and extensions it ignores; the values are read all the same.
warnings.filterwarnings("ignore", module="openpyxl")


class TableUnreadable(ValueError):
    """The spreadsheet cannot be read as one."""


@dataclass(frozen=True)
class TableLimits:
    max_rows: int
    max_cells: int
    max_chars: int
    max_bytes: int


@dataclass
class _Sheet:
    name: str | None
    rows: list[list[str]] = field(default_factory=list)
    more_rows: bool = False


@dataclass
class TableExtract:
    text: str
    sheets: list[dict[str, Any]]
    notes: list[str]

    def summary(self, kind: str) -> str:
        shown = ", ".join(
            f"{s['name']!r} ({s['rows']} rows x {s['columns']} columns"
            + (", more not shown)" if s["cut"] else ")")
            for s in self.sheets
        )
        return f"{kind}: {shown or 'no rows'}" + "".join(f"; {n}" for n in self.notes) + "."


def column_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: a spreadsheet's column name."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        text = value.isoformat()
    else:
        text = str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


class _Budget:
    """The cells left to show, over all sheets of one attachment."""

    def __init__(self, limits: TableLimits) -> None:
        self.limits = limits
        self.cells_left = limits.max_cells
        self.cut_by_cells = False

    def take(self, rows: Iterable[Sequence[Any]], name: str | None) -> _Sheet:
        sheet = _Sheet(name)
        for row in rows:
            cells = [_cell(v) for v in row]
            while cells and not cells[-1]:
                cells.pop()
            if len(sheet.rows) >= self.limits.max_rows or len(cells) > self.cells_left:
                sheet.more_rows = True
                self.cut_by_cells = self.cut_by_cells or len(cells) > self.cells_left
                break
            self.cells_left -= max(1, len(cells))
            sheet.rows.append(cells)
        return sheet


def _render(sheets: list[_Sheet], budget: _Budget) -> TableExtract:
    parts: list[str] = []
    facts: list[dict[str, Any]] = []
    for sheet in sheets:
        width = max((len(r) for r in sheet.rows), default=0)
        name = sheet.name or "table"
        last = column_letters(width - 1) if width else "A"
        head = f'Sheet "{name}"' if sheet.name else "Table"
        lines = [f"{head}: rows 1-{len(sheet.rows)}, columns A-{last}"]
        lines.append("| row | " + " | ".join(column_letters(i) for i in range(width)) + " |")
        for number, row in enumerate(sheet.rows, start=1):
            padded = row + [""] * (width - len(row))
            lines.append(f"| {number} | " + " | ".join(padded) + " |")
        if sheet.more_rows:
            lines.append(f"(rows after {len(sheet.rows)} not shown)")
        parts.append("\n".join(lines))
        facts.append(
            {"name": name, "rows": len(sheet.rows), "columns": width, "cut": sheet.more_rows}
        )
    notes = []
    if any(s.more_rows for s in sheets):
        notes.append(
            "cut at attachments.table_max_cells"
            if budget.cut_by_cells
            else "cut at attachments.table_max_rows"
        )
    text = "\n\n".join(parts)
    if len(text) > budget.limits.max_chars:
        text = text[: budget.limits.max_chars]
        notes.append(f"text cut at {budget.limits.max_chars} characters")
    return TableExtract(text=text, sheets=facts, notes=notes)


def _csv_text(data: bytes) -> str:
    if b"\x00" in data:
        raise TableUnreadable("not CSV text (it holds NUL bytes)")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TableUnreadable("not CSV text (neither UTF-8 nor Windows-1252)")


def _csv_rows(text: str) -> Iterator[list[str]]:
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        yield from csv.reader(io.StringIO(text), dialect)
    except csv.Error as exc:
        raise TableUnreadable(f"not readable CSV ({exc})") from None


def _xlsx_sheets(data: bytes, budget: _Budget) -> list[_Sheet]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise TableUnreadable(f"not a readable XLSX workbook ({exc})") from None
    most = UNPACKED_FACTOR * budget.limits.max_bytes
    if unpacked > most:
        raise TableUnreadable(
            f"the workbook unpacks to {unpacked} bytes, more than {most} "
            f"({UNPACKED_FACTOR} x attachments.max_bytes)"
        )
    # Imported on the worker thread that reads a workbook: openpyxl adds half a second of CPU
    # to every daemon start, and most tasks carry no spreadsheet.
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on a damaged file
        raise TableUnreadable(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    try:
        return [budget.take(ws.iter_rows(values_only=True), ws.title) for ws in book.worksheets]
    except Exception as exc:
        raise TableUnreadable(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    finally:
        book.close()


def extract_table(media_type: str, data: bytes, limits: TableLimits) -> TableExtract:
    """The text table(s) of a CSV (`text/csv`) or an XLSX workbook; TableUnreadable when it
    does not parse."""
    budget = _Budget(limits)
    if media_type == "text/csv":
        sheets = [budget.take(_csv_rows(_csv_text(data)), None)]
    else:
        sheets = _xlsx_sheets(data, budget)
    return _render(sheets, budget)
