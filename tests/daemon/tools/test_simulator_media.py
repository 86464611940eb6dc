"""The simulator takes multimodal messages: it counts the images and documents each call
received, tells which image it was, counts their tokens with the prompt's, and a scenario's
plan gives streams attachments (with the planner's descriptions)."""

from __future__ import annotations

import base64
import hashlib
import math
import os

import httpx
from support.simulator import running_simulator, stats

from daemon.tools.simulator.calls import DOCUMENT_BYTES_PER_TOKEN, IMAGE_TOKENS
from roles.plan.schema import Plan

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAST = {"latency": {"planner": 0.0, "orchestrator": 0.0, "executor": 0.0}}


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def test_images_and_documents_are_counted_told_apart_and_priced() -> None:
    photo, page, doc = b"\x89PNG-one", b"\x89PNG-two", b"%PDF-" + b"x" * 395
    text = "Describe these." * 10
    content = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": data_url("image/png", photo)}},
        {"type": "image_url", "image_url": {"url": data_url("image/png", page), "detail": "high"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": data_url("application/pdf", doc)},
        },
    ]
    with running_simulator(FAST) as sim:
        reply = httpx.post(
            f"{sim.url}/v1/chat/completions",
            json={"model": "gpt-5", "messages": [{"role": "user", "content": content}]},
            headers={"X-Tierd-Role": "executor", "X-Tierd-Purpose": "chat"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        found = stats(sim.url)
    (call,) = found["calls"]
    assert (call["images"], call["documents"]) == (2, 1)
    assert found["images"] == 2 and found["documents"] == 1
    assert call["image_digests"] == [
        hashlib.sha256(photo).hexdigest()[:16],
        hashlib.sha256(page).hexdigest()[:16],
    ]
    media = 2 * IMAGE_TOKENS + math.ceil(len(doc) / DOCUMENT_BYTES_PER_TOKEN)
    assert call["media_tokens"] == media
    # The text part counts as text does; the images and the document on top of it.
    assert call["prompt_tokens"] == math.ceil(len(text) / 4) + media
    assert reply.json()["usage"]["prompt_tokens"] == call["prompt_tokens"]


def test_a_plain_text_call_counts_no_media() -> None:
    with running_simulator(FAST) as sim:
        httpx.post(
            f"{sim.url}/v1/chat/completions",
            json={"model": "gpt-5", "messages": [{"role": "user", "content": "hello"}]},
            timeout=10,
        ).raise_for_status()
        (call,) = stats(sim.url)["calls"]
    assert (call["images"], call["documents"], call["media_tokens"]) == (0, 0, 0)
    assert call["prompt_tokens"] == math.ceil(len("hello") / 4)


def test_a_scenario_plan_gives_streams_attachments_and_describes_them() -> None:
    stream = {"title": "T", "job": "J.", "output_definition": "O."}
    scenario = {
        **FAST,
        "plan": {
            "streams": [
                {**stream, "id": "look", "attachments": ["photo.png"]},
                {**stream, "id": "read", "attachments": ["invoice.pdf"]},
                {**stream, "id": "none"},
            ],
            "attachments": [{"name": "photo.png", "description": "A red bicycle."}],
        },
    }
    with running_simulator(scenario) as sim:
        reply = httpx.post(
            f"{sim.url}/v1/chat/completions",
            json={"model": "gpt-5", "messages": [{"role": "user", "content": "plan"}]},
            headers={"X-Tierd-Role": "planner", "X-Tierd-Purpose": "plan"},
            timeout=10,
        )
    plan = Plan.model_validate_json(reply.json()["choices"][0]["message"]["content"])
    assert [s.attachments for s in plan.streams] == [["photo.png"], ["invoice.pdf"], []]
    # The scenario's description, and a stock one for the attachment it did not describe.
    assert plan.descriptions() == {
        "photo.png": "A red bicycle.",
        "invoice.pdf": "invoice.pdf: the file the task is about (simulated).",
    }
