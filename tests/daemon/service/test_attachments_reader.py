"""PDFs and spreadsheets are read in a child process that is killed at its deadline."""

from __future__ import annotations

import asyncio
import hashlib
import time

import psutil
import pytest
from test_attachments_extract import pdf, pdf_of, png, xlsx

from daemon.service.attachments.prepare import AttachmentLimits, Decoded, read_attachments
from daemon.service.attachments.reader import needs_child, read_in_child
from daemon.service.errors import InvalidParams

LIMITS = AttachmentLimits(
    max_count=20,
    max_bytes=10 << 20,
    max_task_bytes=25 << 20,
    pdf_max_pages=200,
    pdf_max_rendered_pages=10,
    pdf_render_dpi=72,
    table_max_rows=500,
    table_max_cells=20000,
    text_max_chars=100000,
)


def decoded(index: int, name: str, media_type: str, kind: str, data: bytes) -> Decoded:
    return Decoded(index, name, media_type, kind, data, hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]


def slow_pdf(operators: int) -> bytes:
    """A small PDF whose one page draws `operators` pieces of text: pypdf reads about
    30,000 a second, so 400,000 take seconds, from a file of a few kilobytes."""
    body = b"BT /F1 12 Tf " + b"1 0 Td (x) Tj " * operators + b"ET"
    return pdf_of([body], compress=True)


def test_the_child_reads_what_the_daemon_would_have_read() -> None:
    items = [
        decoded(0, "notes.pdf", "application/pdf", "pdf", pdf("First page", None)),
        decoded(1, "book.xlsx", XLSX, "table", xlsx({"Q1": [["region", "sales"], ["EMEA", 3]]})),
        decoded(2, "dot.png", "image/png", "image", png()),
    ]
    assert needs_child(items) and not needs_child(items[2:])
    here = read_attachments(items, LIMITS)
    there = asyncio.run(read_in_child(items, LIMITS, 60.0))
    for a, b in zip(here, there, strict=True):
        assert (a.decoded, a.summary, a.text, a.renders, a.facts) == (
            b.decoded,
            b.summary,
            b.text,
            b.renders,
            b.facts,
        )
    assert there[0].renders and there[0].renders[0][1].startswith(b"\x89PNG")


def test_a_file_that_takes_too_long_is_refused_at_the_deadline_and_its_reader_killed() -> None:
    items = [decoded(0, "slow.pdf", "application/pdf", "pdf", slow_pdf(400_000))]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(InvalidParams) as refused:
        asyncio.run(read_in_child(items, LIMITS, 1.0))
    took = time.monotonic() - started
    assert "took over 1 s" in refused.value.message
    assert refused.value.data == {"field": "attachments", "key": "attachments.read_timeout_s"}
    assert took < 10, took  # reading it takes over ten
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, left


def test_a_damaged_file_is_refused_naming_it() -> None:
    items = [decoded(0, "broken.pdf", "application/pdf", "pdf", b"%PDF-1.7\nnot a pdf at all")]
    with pytest.raises(InvalidParams) as refused:
        asyncio.run(read_in_child(items, LIMITS, 60.0))
    assert refused.value.message.startswith("attachments[0] ('broken.pdf'): ")


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
