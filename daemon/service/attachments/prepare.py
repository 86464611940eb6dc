"""A submit's attachments checked and read: the limits, the decoding, what each one yields.

Checked in this order, each refusal an `InvalidParams` (-32602 / HTTP 422) whose message
names the attachment by index and name (`attachments[1] ('scan.pdf'): ...`) and whose data
says what is accepted (`accepted`, `max_bytes`, `max_task_bytes`, `max_count`): how many
there are, each one's name, its base64, its size, the task's total, its type (by content,
see `kinds`), then what can be read out of it (`images`, `pdf`, `tables`). Nothing is written
here: a refused submit leaves nothing behind. The reading is CPU work: the service runs it
on a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.config.layers import Config
from daemon.service.attachments.images import ImageUnreadable, image_size
from daemon.service.attachments.kinds import ACCEPTED, Kind, TypeRefused
from daemon.service.attachments.kinds import resolve_type as _resolve
from daemon.service.attachments.pdf import PdfLimits, PdfUnreadable, extract_pdf
from daemon.service.attachments.tables import TableLimits, TableUnreadable, extract_table
from daemon.service.errors import InvalidParams
from daemon.service.params import AttachmentParams

__all__ = ["AttachmentLimits", "Decoded", "Prepared", "decode_attachments", "read_attachments"]

#: Characters a name may not hold: control characters, and path separators (a name is a
#: label in prompts and plans, never a path).
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
_SPACE = re.compile(rb"\s+")


@dataclass(frozen=True)
class AttachmentLimits:
    """The `[attachments]` table of the configuration."""

    max_count: int
    max_bytes: int
    max_task_bytes: int
    pdf_max_pages: int
    pdf_max_rendered_pages: int
    pdf_render_dpi: int
    table_max_rows: int
    table_max_cells: int
    text_max_chars: int

    @classmethod
    def from_config(cls, config: Config) -> AttachmentLimits:
        return cls(**{name: int(config.get(f"attachments.{name}")) for name in _LIMIT_KEYS})

    def accepted(self) -> dict[str, Any]:
        """What is accepted, for the data of a refusal."""
        return {
            "accepted": list(ACCEPTED),
            "max_bytes": self.max_bytes,
            "max_task_bytes": self.max_task_bytes,
            "max_count": self.max_count,
        }


_LIMIT_KEYS = tuple(AttachmentLimits.__dataclass_fields__)


@dataclass(frozen=True)
class Decoded:
    """One attachment decoded and typed, not yet read."""

    index: int
    name: str
    media_type: str
    kind: Kind
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Prepared:
    """One attachment with what the models get of it."""

    decoded: Decoded
    summary: str
    text: str = ""
    #: (page, PNG) of a PDF's pages without text, rendered.
    renders: list[tuple[int, bytes]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def _refused(
    index: int, name: str, problem: str, limits: AttachmentLimits, **data: Any
) -> InvalidParams:
    label = f"attachments[{index}]" + (f" ({name!r})" if name else "")
    return InvalidParams(
        f"{label}: {problem}",
        {"field": f"attachments[{index}]", "index": index, "name": name} | limits.accepted() | data,
    )


def _check_names(items: Sequence[AttachmentParams], limits: AttachmentLimits) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if not item.name.strip() or _BAD_NAME.search(item.name):
            raise _refused(
                index,
                item.name,
                "a name is a file name without path separators or control characters",
                limits,
            )
        if item.name in seen:
            raise _refused(
                index,
                item.name,
                f"the name is used twice (also attachments[{seen[item.name]}]): the plan "
                "refers to attachments by name, so each needs its own",
                limits,
            )
        seen[item.name] = index


def _decode_one(index: int, item: AttachmentParams, limits: AttachmentLimits) -> bytes:
    text = item.data.encode("ascii", "replace")
    # The size first, from the base64 length: a huge one is refused before it is decoded.
    if len(text) * 3 // 4 > limits.max_bytes + 3:
        raise _refused(
            index,
            item.name,
            f"larger than attachments.max_bytes ({limits.max_bytes} bytes)",
            limits,
        )
    try:
        data = base64.b64decode(_SPACE.sub(b"", text), validate=True)
    except (binascii.Error, ValueError):
        raise _refused(index, item.name, "data is not valid base64", limits) from None
    if len(data) > limits.max_bytes:
        raise _refused(
            index,
            item.name,
            f"{len(data)} bytes, larger than attachments.max_bytes ({limits.max_bytes} bytes)",
            limits,
            size=len(data),
        )
    if not data:
        raise _refused(index, item.name, "the file is empty", limits)
    return data


def decode_attachments(
    items: Sequence[AttachmentParams], limits: AttachmentLimits
) -> list[Decoded]:
    """Each attachment decoded and typed, within the limits; InvalidParams naming the first
    one that is not."""
    if len(items) > limits.max_count:
        raise InvalidParams(
            f"attachments: {len(items)} given, at most {limits.max_count} are accepted "
            "(attachments.max_count)",
            {"field": "attachments"} | limits.accepted(),
        )
    _check_names(items, limits)
    decoded: list[Decoded] = []
    total = 0
    for index, item in enumerate(items):
        data = _decode_one(index, item, limits)
        total += len(data)
        if total > limits.max_task_bytes:
            raise _refused(
                index,
                item.name,
                f"the attachments come to {total} bytes with this one, more than "
                f"attachments.max_task_bytes ({limits.max_task_bytes} bytes) for one task",
                limits,
            )
        try:
            resolved = _resolve(item.name, item.media_type, data)
        except TypeRefused as exc:
            raise _refused(index, item.name, str(exc), limits) from None
        digest = hashlib.sha256(data).hexdigest()
        decoded.append(Decoded(index, item.name, resolved.media_type, resolved.kind, data, digest))
    return decoded


def _read(item: Decoded, limits: AttachmentLimits) -> Prepared:
    if item.kind == "image":
        width, height = image_size(item.media_type, item.data)
        kind = item.media_type.split("/", 1)[1].upper()
        return Prepared(
            item,
            f"{kind} image, {width}x{height} pixels.",
            facts={"width": width, "height": height},
        )
    if item.kind == "pdf":
        pdf = extract_pdf(
            item.data,
            PdfLimits(
                limits.pdf_max_pages,
                limits.pdf_max_rendered_pages,
                limits.pdf_render_dpi,
                limits.text_max_chars,
            ),
        )
        return Prepared(item, pdf.summary(), pdf.text, pdf.renders, pdf.facts())
    table = extract_table(
        item.media_type,
        item.data,
        TableLimits(
            limits.table_max_rows, limits.table_max_cells, limits.text_max_chars, limits.max_bytes
        ),
    )
    label = "CSV" if item.media_type == "text/csv" else "XLSX workbook"
    facts = {"sheets": table.sheets, "notes": table.notes}
    return Prepared(item, table.summary(label), table.text, facts=facts)


def read_attachments(items: Sequence[Decoded], limits: AttachmentLimits) -> list[Prepared]:
    """What the models get of each attachment; InvalidParams naming the first one that
    cannot be read (a damaged image header, PDF or spreadsheet)."""
    prepared = []
    for item in items:
        try:
            prepared.append(_read(item, limits))
        except (ImageUnreadable, PdfUnreadable, TableUnreadable) as exc:
            raise _refused(item.index, item.name, str(exc), limits) from None
    return prepared
