"""Attachments in the roles: what the planner and an executor are shown, the image parts,
the planner's descriptions standing in for images, and the validator's checks of the plan's
references."""

from __future__ import annotations

import base64
import json

from roles.models.content import (
    AttachmentContent,
    Picture,
    image_part,
    sees_images,
    tier_sees_images,
    with_pictures,
)
from roles.models.tier import ModelTier
from roles.plan.schema import AttachmentNote, Plan, StreamSpec
from roles.plan.validator import PlanRules, validate_plan
from roles.prompts import PromptRules, executor_messages, planner_messages

PHOTO = AttachmentContent(
    name="photo.png",
    media_type="image/png",
    kind="image",
    size=10,
    summary="PNG image, 4x3 pixels.",
    visual=True,
    pictures=(Picture("photo.png", "image/png", b"\x89PNG-photo"),),
)
INVOICE = AttachmentContent(
    name="invoice.pdf",
    media_type="application/pdf",
    kind="pdf",
    size=99,
    text="--- page 1 ---\nTotal 4711 EUR\n\n--- page 2 ---\n(no text layer)",
    summary="PDF, 2 pages; without a text layer: page 2.",
    visual=True,
    pictures=(Picture("invoice.pdf, page 2", "image/png", b"\x89PNG-page2"),),
)
STREAM = StreamSpec(
    id="read", title="Read", job="Read the invoice.", output_definition="The total."
)


def images_in(message: dict[str, object]) -> list[bytes]:
    content = message["content"]
    if isinstance(content, str):
        return []
    assert isinstance(content, list)
    found = []
    for part in content:
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            found.append(base64.b64decode(url.split(",", 1)[1]))
    return found


def text_of(message: dict[str, object]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    return "\n".join(p["text"] for p in content if p["type"] == "text")


def test_the_planner_sees_every_attachment_and_its_images() -> None:
    _system, _prefix, user = planner_messages(
        "Check the invoice",
        "",
        PromptRules(),
        attachments=[PHOTO, INVOICE],
        planner_sees_images=True,
        executors_see_images=False,
    )
    assert '<attachment name="invoice.pdf" type="application/pdf">' in text_of(user)
    assert "Total 4711 EUR" in text_of(user)
    assert images_in(user) == [b"\x89PNG-photo", b"\x89PNG-page2"]
    assert "[image: invoice.pdf, page 2]" in text_of(user)
    # The executors cannot see images: the planner is told to describe them (in its own
    # request, after the task's material: the attachments are the planner's alone).
    assert "cannot see images" in text_of(user)
    assert '"attachments"' in text_of(user)


def test_a_planner_without_vision_gets_no_image_parts() -> None:
    _system, _prefix, user = planner_messages(
        "g", "", PromptRules(), attachments=[PHOTO], planner_sees_images=False
    )
    assert isinstance(user["content"], str)
    assert "It holds images, which cannot be shown to you." in user["content"]


def test_without_attachments_the_prompts_are_plain_text() -> None:
    for message in planner_messages("g", "", PromptRules()) + executor_messages(
        STREAM, "g", {}, PromptRules()
    ):
        assert isinstance(message["content"], str)
        assert "attachment" not in message["content"].lower()


def test_an_executor_that_sees_images_gets_its_own_attachments_as_parts() -> None:
    _system, user = executor_messages(
        STREAM, "g", {}, PromptRules(), attachments=[INVOICE], show_images=True
    )
    assert "Total 4711 EUR" in text_of(user)
    assert "shown to you as images after this text" in text_of(user)
    assert images_in(user) == [b"\x89PNG-page2"]
    assert "photo.png" not in text_of(user)


def test_an_executor_without_vision_reads_the_planners_description() -> None:
    _system, user = executor_messages(
        STREAM,
        "g",
        {},
        PromptRules(),
        attachments=[PHOTO, INVOICE],
        show_images=False,
        descriptions={"photo.png": "A red bicycle leaning on a wall."},
    )
    assert isinstance(user["content"], str)
    text = user["content"]
    assert "You cannot see this image; the planner describes it:\nA red bicycle" in text
    # Nothing described the PDF's image page: the executor is told so, not left guessing.
    assert "It holds images you cannot see, and no description of them was given." in text
    assert "Total 4711 EUR" in text


def test_with_pictures_adds_parts_to_the_last_user_message_only() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "last"},
    ]
    out = with_pictures(messages, [Picture("p", "image/gif", b"GIF89a")])
    assert out[1]["content"] == "first" and messages[3]["content"] == "last"
    assert out[3]["content"][0] == {"type": "text", "text": "last"}
    assert out[3]["content"][2] == image_part(Picture("p", "image/gif", b"GIF89a"))
    assert out[3]["content"][2]["image_url"]["url"] == "data:image/gif;base64,R0lGODlh"


def test_vision_is_litellms_to_say_for_every_model_of_a_tier() -> None:
    assert sees_images("openai/gpt-5") and not sees_images("openai/gpt-3.5-turbo")
    assert not sees_images("openai/some-local-model")
    assert tier_sees_images(ModelTier(model="openai/gpt-5"))
    # A fallback that cannot see images would fail the call: the tier does not see them.
    mixed = ModelTier(model="openai/gpt-5", fallbacks=["openai/gpt-3.5-turbo"])
    assert not tier_sees_images(mixed)


def test_the_validator_checks_the_plans_references_to_attachments() -> None:
    rules = PlanRules(attachments=["photo.png", "invoice.pdf"], describe=["photo.png"])
    plan = Plan(
        streams=[
            STREAM.model_copy(update={"attachments": ["invoice.pdf", "invoice.PDF"]}),
            StreamSpec(
                id="look",
                title="Look",
                job="Look at it.",
                output_definition="What it shows.",
                attachments=["photo.png"],
            ),
        ],
        attachments=[AttachmentNote(name="scan.tif", description="x")],
    )
    problems = validate_plan(plan, rules)
    assert len(problems) == 3, problems
    assert (
        "stream 'read' names attachment 'invoice.PDF', which the task does not have"
        in (problems[0])
    )
    assert "'photo.png' and 'invoice.pdf'" in problems[0]
    assert "describes attachment 'scan.tif'" in problems[1]
    assert "attachment 'photo.png' holds images and is given to stream(s) 'look'" in problems[2]
    fixed = plan.model_copy(
        update={
            "streams": [
                STREAM.model_copy(update={"attachments": ["invoice.pdf"]}),
                plan.streams[1],
            ],
            "attachments": [AttachmentNote(name="photo.png", description="A bicycle.")],
        }
    )
    assert validate_plan(fixed, rules) == []
    # An executor that sees images needs no description.
    seeing = PlanRules(attachments=["photo.png", "invoice.pdf"], describe=[])
    assert validate_plan(fixed.model_copy(update={"attachments": []}), seeing) == []
    assert validate_plan(fixed.model_copy(update={"attachments": []}), rules) != []


def test_the_planner_never_gets_the_delivery_tierd_adds_in_its_schema() -> None:
    schema = json.dumps(Plan.model_json_schema())
    assert "attachment_delivery" not in schema and '"attachments"' in schema
    rejected = Plan(
        streams=[STREAM.model_copy(update={"attachment_delivery": {"a.png": "images"}})]
    )
    _system, _prefix, user = planner_messages(
        "g", "", PromptRules(), previous_error="bad", previous_plan=rejected
    )
    assert "attachment_delivery" not in user["content"]
    assert '"attachments"' not in user["content"]  # none given: the plan reads as before
