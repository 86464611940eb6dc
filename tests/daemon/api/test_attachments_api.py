"""Attachments through a real daemon on the simulator: an image and a PDF handed over with a
task, over JSON-RPC, REST's multipart form and `tierd submit --attach`.

What must hold: the files are kept privately in the task's folder; the planner's call carries
the image as an image part (the simulator's record says which image reached which call); the
PDF's text reaches the planner and only the executor of the stream the plan gave it; an
executor whose model cannot see images gets the planner's description instead; a wrong type,
an oversized file and a damaged PDF are each refused naming the attachment, and leave nothing
behind (no task, no file); removing the task's data removes its files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject
from support import CHEAP
from support.cli import run_tierd
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, stats

from daemon.api.json_body import FORM_PATH
from daemon.home.paths import resolve_homes
from daemon.service.attachments.keeper import AttachmentKeeper
from daemon.service.attachments.pdf import encode_png
from daemon.store.store import Store

PDF_TEXT = "Invoice total 4711 EUR"
DESCRIPTION = "A red bicycle leaning on a brick wall (DESC-MARK)."
QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}


def stream(id_: str, *attachments: str) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Stream {id_}",
        "job": f"Do {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": [f"{id_}/"],
        "attachments": list(attachments),
    }


SCENARIO = {
    "latency": QUICK,
    "plan": {
        "streams": [stream("read", "invoice.pdf"), stream("look", "photo.png"), stream("none")],
        "attachments": [{"name": "photo.png", "description": DESCRIPTION}],
    },
    "watch": [PDF_TEXT, "DESC-MARK"],
}


def make_png() -> bytes:
    """A 3x2 RGB PNG, from raw rows with zlib and struct."""
    return encode_png(3, 2, 9, bytes(range(18)))


def make_pdf() -> bytes:
    """Page 1 with a text layer, page 2 only a drawing (no text: rendered for vision)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for body in (
        f"BT /F1 12 Tf 20 250 Td ({PDF_TEXT}) Tj ET".encode(),
        b"1 0 0 rg 50 50 99 99 re f",
    ):
        page = writer.add_blank_page(width=300, height=300)
        fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        content = StreamObject()
        content.set_data(body)
        page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


PNG, PDF = make_png(), make_pdf()


def attachment(name: str, data: bytes, media_type: str = "") -> dict[str, str]:
    return {"name": name, "media_type": media_type, "data": base64.b64encode(data).decode()}


FILES = [
    attachment("photo.png", PNG, "image/png"),
    attachment("invoice.pdf", PDF, "application/pdf"),
]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Env:
    home: Path
    daemon: DaemonProcess
    sim_url: str

    def submit(self, **params: Any) -> dict[str, Any]:
        return self.daemon.rpc("task/submit", {"goal": "Check the invoice", **params})

    def finished(self, task_id: str) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            task = self.daemon.rpc("task/get", {"task_id": task_id})["result"]
            return task if task["state"] in ("completed", "failed") else None

        task: dict[str, Any] = wait_for(ended, timeout=120)
        assert task["state"] == "completed", task.get("error")
        return task

    def calls(self, task_id: str) -> list[dict[str, Any]]:
        return [c for c in stats(self.sim_url)["calls"] if c["task_id"] == task_id]

    def task_count(self) -> int:
        return len(self.daemon.rpc("task/list", {"limit": 500})["result"]["tasks"])

    def folders(self) -> list[str]:
        tasks = self.home / "tasks"
        return sorted(p.name for p in tasks.iterdir()) if tasks.is_dir() else []

    def set(self, key: str, value: Any) -> None:
        reply = self.daemon.rpc("config/set", {"key": key, "value": value})
        assert "result" in reply, reply


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("home")
    with running_simulator(SCENARIO) as sim:
        write_config(home, sim.url)
        daemon = DaemonProcess(home).start()
        try:
            yield Env(home, daemon, sim.url)
        finally:
            daemon.stop()


def one(calls: list[dict[str, Any]], purpose: str, stream_id: str | None = None) -> dict[str, Any]:
    found = [c for c in calls if c["purpose"] == purpose and c["stream_id"] == stream_id]
    assert len(found) == 1, (purpose, stream_id, found)
    return found[0]


def test_an_image_and_a_pdf_reach_the_planner_and_only_their_own_streams(env: Env) -> None:
    task_id = env.submit(attachments=FILES)["result"]["task_id"]
    task = env.finished(task_id)
    calls = env.calls(task_id)

    plan = one(calls, "plan")
    # The photo as an image part, and the PDF's page without text, rendered.
    assert plan["images"] == 2 and digest(PNG) in plan["image_digests"]
    assert PDF_TEXT in plan["watched"]
    read, look, none = (one(calls, "execute", s) for s in ("read", "look", "none"))
    assert PDF_TEXT in read["watched"] and read["images"] == 1
    assert digest(PNG) not in read["image_digests"]  # its image is the PDF's page
    assert look["image_digests"] == [digest(PNG)] and PDF_TEXT not in look["watched"]
    assert none["images"] == 0 and none["watched"] == []
    for call in calls:
        if call["purpose"] not in ("plan", "execute"):
            assert call["images"] == 0 and PDF_TEXT not in call["watched"], call
    delivery = {s["id"]: s["attachment_delivery"] for s in task["plan"]["streams"]}
    assert delivery == {
        "read": {"invoice.pdf": "text and images"},
        "look": {"photo.png": "images"},
        "none": {},
    }
    # Image tokens are tokens: the report's planner figures are the simulator's, images in.
    planner = task["report"]["usage"]["per_role"]["planner"]
    assert planner["prompt_tokens"] == plan["prompt_tokens"] >= plan["media_tokens"] == 2 * 765

    # Kept privately, content-addressed, in the task's folder.
    folder = env.home / "tasks" / task_id / "attachments"
    sha_png, sha_pdf = (hashlib.sha256(d).hexdigest() for d in (PNG, PDF))
    assert (folder / sha_png).read_bytes() == PNG and (folder / sha_pdf).read_bytes() == PDF
    assert PDF_TEXT in (folder / f"{sha_pdf}.txt").read_text()
    assert (folder / f"{sha_pdf}.p2.png").read_bytes().startswith(b"\x89PNG")
    for path in [env.home / "tasks", folder.parent, folder, *folder.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_an_executor_without_vision_gets_the_planners_description(env: Env) -> None:
    env.set("models.executor.model", "openai/gpt-3.5-turbo")  # litellm: no vision
    try:
        task_id = env.submit(attachments=FILES)["result"]["task_id"]
        task = env.finished(task_id)
    finally:
        env.set("models.executor.model", CHEAP)
    calls = env.calls(task_id)
    assert one(calls, "plan")["images"] == 2  # the planner still sees them
    look, read = one(calls, "execute", "look"), one(calls, "execute", "read")
    assert look["images"] == 0 and "DESC-MARK" in look["watched"]
    assert read["images"] == 0 and PDF_TEXT in read["watched"]
    delivery = {s["id"]: s["attachment_delivery"] for s in task["plan"]["streams"]}
    assert delivery["look"] == {"photo.png": "description"}
    assert delivery["read"] == {"invoice.pdf": "text and description"}


def refused_everywhere(env: Env, files: list[dict[str, str]], words: str) -> dict[str, Any]:
    """Submit `files` over JSON-RPC and REST: both refused naming attachments[1], nothing
    stored; the JSON-RPC error."""
    before, folders = env.task_count(), env.folders()
    reply = env.submit(attachments=files)
    error = reply["error"]
    assert error["code"] == -32602, reply
    assert error["message"].startswith(f"attachments[1] ({files[1]['name']!r}): "), error
    assert words in error["message"], error
    assert (
        error["data"]["field"] == "attachments[1]"
        and "application/pdf" in error["data"]["accepted"]
    )
    with env.daemon.http() as h:
        rest = h.post("/v1/tasks", json={"goal": "g", "attachments": files})
    assert rest.status_code == 422 and words in rest.json()["error"]["message"]
    assert env.task_count() == before and env.folders() == folders
    return error


def test_refused_attachments_are_named_and_leave_nothing(env: Env) -> None:
    ok = FILES[0]
    refused_everywhere(
        env, [ok, attachment("notes.txt", b"plain words", "text/plain")], "accepted: PNG"
    )
    refused_everywhere(
        env, [ok, attachment("fake.pdf", PNG, "application/pdf")], "its content is a PNG"
    )
    refused_everywhere(
        env, [ok, attachment("scan.pdf", b"%PDF-1.4\n" + b"\x00" * 300)], "not a readable PDF"
    )
    env.set("attachments.max_bytes", 4096)
    try:
        error = refused_everywhere(
            env, [ok, attachment("big.pdf", PDF + b"\0" * 5000)], "attachments.max_bytes"
        )
        assert error["data"]["max_bytes"] == 4096
    finally:
        env.set("attachments.max_bytes", 10485760)


def test_a_multipart_form_submits_the_same_task(env: Env) -> None:
    task = {"goal": "Check the invoice", "idempotency_key": "form-1"}
    files = [
        ("attachments", ("photo.png", PNG, "image/png")),
        ("attachments", ("invoice.pdf", PDF, "application/octet-stream")),  # told by content
    ]
    with env.daemon.http() as h:
        reply = h.post(FORM_PATH, data={"task": json.dumps(task)}, files=files)
        assert reply.status_code == 202, reply.text
        task_id = reply.json()["task_id"]
        # A retry of the same form is the same task; other files under that key are refused.
        again = h.post(FORM_PATH, data={"task": json.dumps(task)}, files=files)
        assert again.json() == {
            "task_id": task_id,
            "state": again.json()["state"],
            "duplicate": True,
        }
        other = h.post(FORM_PATH, data={"task": json.dumps(task)}, files=files[:1])
        assert other.status_code == 422 and "attachments" in other.json()["error"]["message"]
        wrong = h.post(
            FORM_PATH,
            data={"task": json.dumps({"goal": "g"})},
            files=[("attachments", ("a.docx", b"PK\x03\x04junk", "application/msword"))],
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"]["message"].startswith("attachments[0] ('a.docx'): ")
    env.finished(task_id)
    plan = one(env.calls(task_id), "plan")
    assert plan["images"] == 2 and digest(PNG) in plan["image_digests"]


def test_the_cli_attaches_files(env: Env, tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(PNG)
    (tmp_path / "invoice.pdf").write_bytes(PDF)
    proc = run_tierd(
        env.home,
        "submit",
        "Check the invoice",
        "--attach",
        str(tmp_path / "photo.png"),
        "--attach",
        str(tmp_path / "invoice.pdf"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    task_id = json.loads(proc.stdout)["task_id"]
    env.finished(task_id)
    calls = env.calls(task_id)
    assert digest(PNG) in one(calls, "plan")["image_digests"]
    assert PDF_TEXT in one(calls, "execute", "read")["watched"]
    missing = run_tierd(env.home, "submit", "g", "--attach", str(tmp_path / "nope.png"))
    assert missing.returncode != 0 and "cannot read --attach" in missing.stderr
    wrong = run_tierd(env.home, "submit", "g", "--attach", __file__)
    assert wrong.returncode != 0 and "is not accepted" in wrong.stderr


def test_removing_a_tasks_data_removes_its_files(env: Env) -> None:
    """Last in the module: it stops the daemon to open its store here."""
    task_id = env.submit(attachments=FILES)["result"]["task_id"]
    env.finished(task_id)
    assert (env.home / "tasks" / task_id / "attachments").is_dir()
    env.daemon.stop()
    homes = resolve_homes({"TIERD_HOME": str(env.home)})

    async def remove() -> tuple[bool, int]:
        store = Store(f"sqlite:///{homes.database}")
        await store.open()
        try:
            removed = await AttachmentKeeper(store, homes.data_dir).remove(task_id)
            return removed, len(await store.attachments_of(task_id))
        finally:
            await store.close()

    assert asyncio.run(remove()) == (True, 0)
    assert not (env.home / "tasks" / task_id).exists()
    assert task_id not in env.folders() and env.folders()  # the other tasks' stay
