"""What tierd reads out of an attachment, and what it refuses, without a daemon.

Files are made here: PNGs from raw rows (zlib and struct, `encode_png`), PDFs with pypdf (a
page with a text layer, a page that is only a drawing), workbooks with openpyxl. Each refusal
names the attachment by index and name, and a refused file leaves nothing written.
"""

from __future__ import annotations

import base64
import io
import stat
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import openpyxl
import pytest
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject

from daemon.service.attachments import files
from daemon.service.attachments.images import ImageUnreadable, image_size
from daemon.service.attachments.kinds import (
    CSV,
    PDF,
    PNG,
    XLSX,
    TypeRefused,
    guess_media_type,
    resolve_type,
)
from daemon.service.attachments.pdf import PdfLimits, PdfUnreadable, encode_png, extract_pdf
from daemon.service.attachments.prepare import (
    AttachmentLimits,
    decode_attachments,
    read_attachments,
)
from daemon.service.attachments.tables import (
    TableLimits,
    TableUnreadable,
    column_letters,
    extract_table,
)
from daemon.service.errors import InvalidParams
from daemon.service.params import AttachmentParams

LIMITS = AttachmentLimits(
    max_count=5,
    max_bytes=200_000,
    max_task_bytes=300_000,
    pdf_max_pages=5,
    pdf_max_rendered_pages=3,
    pdf_render_dpi=50,
    table_max_rows=3,
    table_max_cells=100,
    text_max_chars=10_000,
)
PDF_LIMITS = PdfLimits(max_pages=5, max_rendered_pages=3, render_dpi=50, max_chars=10_000)


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (RGB) made with zlib and struct, by way of the product's own encoder."""
    rows = bytes((x * 40) % 256 for x in range(width * 3 * height))
    return encode_png(width, height, width * 3, rows)


def pdf(*pages: str | None) -> bytes:
    """A PDF: a page with each text as its text layer; None: a page that is only a drawing."""
    return pdf_of(
        b"0 0 1 rg 50 50 200 200 re f"
        if text is None
        else f"BT /F1 12 Tf 20 250 Td ({text}) Tj ET".encode()
        for text in pages
    )


def pdf_of(contents: Iterable[bytes], *, compress: bool = False) -> bytes:
    """A PDF of one page per content stream, with Helvetica as /F1."""
    writer = PdfWriter()
    for body in contents:
        page = writer.add_blank_page(width=300, height=300)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        content = StreamObject()
        content.set_data(body)
        page[NameObject("/Contents")] = writer._add_object(
            content.flate_encode() if compress else content
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def item(name: str, data: bytes, media_type: str = "") -> AttachmentParams:
    return AttachmentParams(
        name=name, media_type=media_type, data=base64.b64encode(data).decode("ascii")
    )


# --- types ------------------------------------------------------------------------------------


def test_the_content_decides_the_type_not_the_name_or_the_claim() -> None:
    assert resolve_type("x.bin", "", png()).media_type == PNG
    assert resolve_type("photo.png", "application/octet-stream", png()).kind == "image"
    assert resolve_type("a.pdf", "application/x-pdf", pdf("hi")).media_type == PDF
    assert resolve_type("book.xlsx", "", xlsx({"S": [[1]]})).media_type == XLSX
    assert resolve_type("data.csv", "application/vnd.ms-excel", b"a,b\n1,2\n").media_type == CSV
    assert resolve_type("data.txt", "text/csv; charset=utf-8", b"a,b\n").kind == "table"
    with pytest.raises(TypeRefused, match="declared as a PDF document, but its content is a PNG"):
        resolve_type("photo.pdf", "application/pdf", png())
    with pytest.raises(TypeRefused, match="declared as a PNG image, but its content is not one"):
        resolve_type("photo.png", "image/png", b"GIF? no: plain text")
    with pytest.raises(TypeRefused, match="'text/plain' is not accepted; accepted: PNG"):
        resolve_type("notes.txt", "text/plain", b"hello")
    with pytest.raises(TypeRefused, match=r"\.xls\) workbook"):
        resolve_type("old.xls", "", b"\xd0\xcf\x11\xe0" + b"\0" * 100)


def test_the_cli_guesses_a_files_type_from_its_content() -> None:
    assert guess_media_type("scan", pdf("x")) == PDF
    assert guess_media_type("t.csv", b"a,b") == CSV
    assert guess_media_type("notes.txt", b"hello") == "application/octet-stream"


def test_image_sizes_come_from_their_headers() -> None:
    assert image_size(PNG, png(7, 5)) == (7, 5)
    gif = b"GIF89a" + struct.pack("<HH", 12, 34) + b"\0" * 10
    assert image_size("image/gif", gif) == (12, 34)
    jpeg = (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", 4)
        + b"JF"
        + b"\xff\xc0"
        + struct.pack(">HBHH", 11, 8, 20, 30)
    )
    assert image_size("image/jpeg", jpeg) == (30, 20)
    webp = (
        b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (9).to_bytes(3, "little") + (4).to_bytes(3, "little")
    )
    assert image_size("image/webp", webp) == (10, 5)
    with pytest.raises(ImageUnreadable):
        image_size(PNG, b"\x89PNG\r\n\x1a\n" + b"\0" * 4)
    with pytest.raises(ImageUnreadable):
        image_size("image/jpeg", b"\xff\xd8\xff\xe0\0\4ab")


# --- PDFs ---------------------------------------------------------------------------------


def test_a_pdf_gives_its_text_per_page_and_renders_the_pages_without_text() -> None:
    got = extract_pdf(pdf("Invoice 4711", None, "Total 99 EUR"), PDF_LIMITS)
    assert got.pages == 3
    assert "--- page 1 ---\nInvoice 4711" in got.text
    assert "--- page 2 ---\n(no text layer)" in got.text
    assert "--- page 3 ---\nTotal 99 EUR" in got.text
    assert got.text_pages == [1, 3] and got.image_pages == [2]
    ((page, image),) = got.renders
    assert page == 2 and image.startswith(b"\x89PNG\r\n\x1a\n")
    # 300 points at 50 dpi: 208.3 pixels a side, rounded up.
    assert image_size(PNG, image) == (209, 209)
    assert "without a text layer: page 2" in got.summary()


def test_a_pdf_renders_at_most_the_configured_pages() -> None:
    got = extract_pdf(pdf(None, None, None, None), PDF_LIMITS)
    assert [page for page, _ in got.renders] == [1, 2, 3]
    assert got.image_pages == [1, 2, 3, 4]
    assert any("pdf_max_rendered_pages" in note for note in got.notes)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\nthis is not a PDF at all", b"%PDF-1.7\n" + b"\x00" * 200],
)
def test_a_damaged_pdf_is_unreadable(data: bytes) -> None:
    with pytest.raises(PdfUnreadable, match="not a readable PDF"):
        extract_pdf(data, PDF_LIMITS)


def test_a_cut_pdf_is_unreadable() -> None:
    whole = pdf("text")
    with pytest.raises(PdfUnreadable):
        extract_pdf(whole[: len(whole) // 2], PDF_LIMITS)


def test_a_pdf_over_the_page_limit_is_refused() -> None:
    with pytest.raises(PdfUnreadable, match="6 pages; at most 5"):
        extract_pdf(pdf(*(["p"] * 6)), PDF_LIMITS)


# --- tables -------------------------------------------------------------------------------


def test_column_letters_are_a_spreadsheets() -> None:
    assert [column_letters(i) for i in (0, 25, 26, 27, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AB",
        "ZZ",
        "AAA",
    ]


def test_a_csv_becomes_a_table_with_cell_references() -> None:
    data = b"item;amount\nbike;120\nlamp;15|5\n"
    got = extract_table(CSV, data, TableLimits(10, 100, 10_000, 1_000_000))
    lines = got.text.splitlines()
    assert lines[0] == "Table: rows 1-3, columns A-B"
    assert lines[1] == "| row | A | B |"
    assert lines[3] == "| 2 | bike | 120 |"
    assert lines[4] == "| 3 | lamp | 15\\|5 |"  # a | in a cell cannot break the table


def test_a_workbook_names_its_sheets_and_is_bounded() -> None:
    data = xlsx({"Q1": [["month", "sales"], ["jan", 10], ["feb", 20], ["mar", 30]], "Q2": [["x"]]})
    got = extract_table(XLSX, data, TableLimits(3, 100, 10_000, 1_000_000))
    assert 'Sheet "Q1": rows 1-3, columns A-B' in got.text
    assert "| 3 | feb | 20 |" in got.text and "mar" not in got.text
    assert "(rows after 3 not shown)" in got.text
    assert 'Sheet "Q2": rows 1-1, columns A-A' in got.text
    assert got.sheets[0] == {"name": "Q1", "rows": 3, "columns": 2, "cut": True}
    assert "table_max_rows" in got.summary("XLSX workbook")


def test_the_cell_budget_holds_over_all_sheets() -> None:
    data = xlsx({"A": [[1, 2, 3]] * 3, "B": [[4, 5, 6]] * 3})
    got = extract_table(XLSX, data, TableLimits(100, 7, 10_000, 1_000_000))
    assert got.sheets[0]["rows"] == 2 and got.sheets[1]["rows"] == 0
    assert "table_max_cells" in got.notes[0]


def test_a_damaged_or_inflated_workbook_is_unreadable() -> None:
    with pytest.raises(TableUnreadable):
        extract_table(XLSX, b"PK\x03\x04 not really a zip", TableLimits(3, 10, 1000, 1000))
    # Unpacks to far more than 50 x max_bytes: refused before openpyxl parses it.
    with pytest.raises(TableUnreadable, match="unpacks to"):
        extract_table(XLSX, xlsx({"S": [["x" * 100]] * 50}), TableLimits(3, 10, 1000, 10))
    with pytest.raises(TableUnreadable, match="NUL"):
        extract_table(CSV, b"a,b\n\x00\x01", TableLimits(3, 10, 1000, 1000))


# --- a submit's attachments ------------------------------------------------------------------


def refusal(items: list[AttachmentParams]) -> InvalidParams:
    with pytest.raises(InvalidParams) as caught:
        read_attachments(decode_attachments(items, LIMITS), LIMITS)
    return caught.value


def test_every_refusal_names_the_attachment_and_what_is_accepted() -> None:
    ok = item("photo.png", png())
    cases = {
        "not valid base64": [ok, AttachmentParams(name="b.pdf", data="!!!")],
        "larger than attachments.max_bytes": [ok, item("big.png", png() + b"\0" * 200_001)],
        "is not accepted": [ok, item("notes.txt", b"plain words", "text/plain")],
        "not a readable PDF": [ok, item("scan.pdf", b"%PDF-1.4\ngarbage")],
        "used twice": [ok, item("photo.png", png())],
        "without path separators": [ok, item("../etc/passwd", png())],
        "the file is empty": [ok, item("empty.png", b"")],
    }
    for problem, items in cases.items():
        error = refusal(items)
        assert error.message.startswith("attachments[1] ("), error.message
        assert problem in error.message, error.message
        assert error.data["field"] == "attachments[1]" and error.data["index"] == 1
        assert error.data["name"] == items[1].name
        assert "application/pdf" in error.data["accepted"]
        assert error.data["max_bytes"] == LIMITS.max_bytes


def test_the_tasks_total_and_count_are_bounded() -> None:
    big = png() + b"\0" * 150_000  # two fit max_bytes each, not max_task_bytes together
    error = refusal([item("a.png", big), item("b.png", big)])
    assert "attachments.max_task_bytes (300000 bytes)" in error.message
    with pytest.raises(InvalidParams, match="6 given, at most 5"):
        decode_attachments([item(f"{i}.png", png()) for i in range(6)], LIMITS)


def test_prepared_attachments_carry_what_the_models_get() -> None:
    items = [
        item("photo.png", png(4, 3)),
        item("invoice.pdf", pdf("Total 4711", None)),
        item("costs.csv", b"a,b\n1,2\n", "text/csv"),
    ]
    image, document, table = read_attachments(decode_attachments(items, LIMITS), LIMITS)
    assert image.summary == "PNG image, 4x3 pixels." and image.text == ""
    assert "Total 4711" in document.text and [p for p, _ in document.renders] == [2]
    assert document.facts["image_pages"] == [2]
    assert "| 2 | 1 | 2 |" in table.text
    assert image.decoded.sha256 != document.decoded.sha256


# --- the task's folder -------------------------------------------------------------------


def test_a_tasks_folder_is_content_addressed_private_and_removed_whole(tmp_path: Path) -> None:
    same = png()
    items = [item("a.png", same), item("b.png", same), item("c.pdf", pdf("x", None))]
    prepared = read_attachments(decode_attachments(items, LIMITS), LIMITS)
    rows = files.write_task_files(tmp_path, "t1", prepared)
    folder = files.task_folder(tmp_path, "t1")
    names = sorted(p.name for p in folder.iterdir())
    sha_png, sha_pdf = prepared[0].decoded.sha256, prepared[2].decoded.sha256
    # Two attachments with the same bytes share one file.
    assert names == sorted([sha_png, sha_pdf, f"{sha_pdf}.txt", f"{sha_pdf}.p2.png"])
    assert (folder / sha_png).read_bytes() == same
    for path in [folder, folder.parent, tmp_path / "tasks"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert [(r.position, r.name, r.kind, r.folder) for r in rows] == [
        (0, "a.png", "image", str(folder)),
        (1, "b.png", "image", str(folder)),
        (2, "c.pdf", "pdf", str(folder)),
    ]
    assert rows[2].text_file == f"{sha_pdf}.txt" and rows[0].text_file is None
    assert files.remove_task_files(tmp_path, "t1") is True
    assert not (tmp_path / "tasks" / "t1").exists()
    assert files.remove_task_files(tmp_path, "t1") is False


def test_the_sweep_removes_only_folders_without_a_task(tmp_path: Path) -> None:
    prepared = read_attachments(decode_attachments([item("a.png", png())], LIMITS), LIMITS)
    for task_id in ("t-kept", "t-orphan"):
        files.write_task_files(tmp_path, task_id, prepared)
    (tmp_path / "tasks" / ".incoming-t-x-1234").mkdir()
    names = files.folders(tmp_path)
    assert names == [".incoming-t-x-1234", "t-kept", "t-orphan"]
    assert files.sweep(tmp_path, names, {"t-kept"}) == [".incoming-t-x-1234", "t-orphan"]
    assert files.folders(tmp_path) == ["t-kept"]


def test_a_png_written_here_is_a_png_zlib_can_read_back() -> None:
    data = png(2, 1)
    assert data[12:16] == b"IHDR"
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert raw == b"\x00" + bytes((x * 40) % 256 for x in range(6))
