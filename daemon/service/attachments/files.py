"""The task's attachments folder: content-addressed, private, and gone with the task's data.

`<data dir>/tasks/<task id>/attachments/` holds each file under its sha256 (two attachments
with the same bytes share one), the text read out of it as `<sha256>.txt`, and a PDF's pages
rendered as `<sha256>.p<page>.png`. Directories are 0700 and files 0600, like the rest of
tierd's home: they hold what the user handed over.

The folder is written whole under a temporary name and renamed into place, then the task and
its attachments' rows are stored; a store that refuses the task has the folder removed again.
What a crash leaves between the two (a folder without a task, a temporary folder) is removed
by `sweep`. Removing a task's data (`remove_task_files`) removes the whole task folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from daemon.service.attachments.prepare import Prepared
from daemon.store.store import AttachmentRow

__all__ = ["TASKS_DIR", "remove_task_files", "sweep", "task_folder", "write_task_files"]

#: The tasks' folders, under the data directory.
TASKS_DIR = "tasks"
#: Prefix of a folder still being written (never a task id: those start with "t").
_INCOMING = ".incoming-"


def task_folder(data_dir: Path, task_id: str) -> Path:
    """Where the task's attachments are kept."""
    return data_dir / TASKS_DIR / task_id / "attachments"


def _write(path: Path, data: bytes) -> None:
    """`data` in a new file only the user can read (an existing one has the same content:
    its name is its hash)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _rows(
    task_id: str, folder: Path, prepared: Sequence[Prepared], now: float
) -> list[AttachmentRow]:
    rows = []
    for item in prepared:
        d = item.decoded
        renders = [{"page": page, "file": f"{d.sha256}.p{page}.png"} for page, _ in item.renders]
        rows.append(
            AttachmentRow(
                task_id=task_id,
                position=d.index,
                name=d.name,
                media_type=d.media_type,
                kind=d.kind,
                sha256=d.sha256,
                size=d.size,
                folder=str(folder),
                text_file=f"{d.sha256}.txt" if item.text else None,
                summary=item.summary,
                renders_json=json.dumps(renders),
                facts_json=json.dumps(item.facts),
                created_at=now,
            )
        )
    return rows


def write_task_files(
    data_dir: Path, task_id: str, prepared: Sequence[Prepared]
) -> list[AttachmentRow]:
    """Write the task's folder and return its attachments' rows (not stored yet). Blocking:
    run it on a worker thread."""
    final = task_folder(data_dir, task_id)
    tasks = data_dir / TASKS_DIR
    tasks.mkdir(mode=0o700, parents=True, exist_ok=True)
    incoming = tasks / f"{_INCOMING}{task_id}-{secrets.token_hex(4)}"
    try:
        # One level at a time: `parents=True` would make the parent with the default mode.
        incoming.mkdir(mode=0o700)
        folder = incoming / "attachments"
        folder.mkdir(mode=0o700)
        for item in prepared:
            sha = item.decoded.sha256
            _write(folder / sha, item.decoded.data)
            if item.text:
                _write(folder / f"{sha}.txt", item.text.encode("utf-8"))
            for page, png in item.renders:
                _write(folder / f"{sha}.p{page}.png", png)
        incoming.rename(final.parent)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return _rows(task_id, final, prepared, time.time())


def remove_task_files(data_dir: Path, task_id: str) -> bool:
    """Remove the task's folder; whether there was one. Blocking: run it on a worker
    thread."""
    folder = data_dir / TASKS_DIR / task_id
    if not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def folders(data_dir: Path) -> list[str]:
    """The names in the tasks' folder (task ids, and temporary folders)."""
    tasks = data_dir / TASKS_DIR
    try:
        return sorted(entry.name for entry in tasks.iterdir() if entry.is_dir())
    except FileNotFoundError:
        return []


def sweep(data_dir: Path, names: Collection[str], known: Collection[str]) -> list[str]:
    """Remove the folders among `names` whose task is not `known` (a crash between writing
    them and storing the task), temporary ones included; the names removed."""
    removed = []
    for name in names:
        if name in known:
            continue
        shutil.rmtree(data_dir / TASKS_DIR / name, ignore_errors=True)
        removed.append(name)
    return removed
