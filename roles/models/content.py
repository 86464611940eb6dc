"""Attachments as a model sees them: text, and images as content parts of a chat message.

A task's attachments reach the models in two forms. Text (a PDF's pages, a spreadsheet's
cells) goes into the prompt itself; pictures (an image, a PDF page without a text layer) go as
OpenAI-style content parts, `{"type": "image_url", "image_url": {"url": "data:...;base64,..."}}`,
which litellm passes to every provider that takes images. Whether a model takes them is
litellm's to say (`litellm.supports_vision`, from its price table): a tier sees images only
when its model and every fallback do, since a fallback that cannot would fail the call.

The roles build their prompts from `AttachmentContent` (what the engine read from the task's
folder) and `with_pictures` adds the parts to the last user message; without pictures the
messages stay plain strings, exactly as before attachments existed.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from roles.models.tier import ModelTier

__all__ = [
    "AttachmentContent",
    "AttachmentKind",
    "Picture",
    "image_part",
    "sees_images",
    "tier_sees_images",
    "with_pictures",
]

AttachmentKind = Literal["image", "pdf", "table"]


@dataclass(frozen=True)
class Picture:
    """One image to show a model: the image attachment itself, or a rendered PDF page."""

    #: What it is, for the text beside it ("photo.png", "invoice.pdf, page 2").
    label: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class AttachmentContent:
    """One attachment of a task as the prompts use it."""

    name: str
    media_type: str
    kind: AttachmentKind
    size: int
    #: The extracted text with its references (pages, sheets and cells); "" for an image.
    text: str = ""
    #: One line about its shape: pages, pages without text, sheets and rows, image size.
    summary: str = ""
    #: Whether part of it is only an image (an image, a PDF page without text): a model
    #: without vision misses that part, whether or not `pictures` were read.
    visual: bool = False
    #: What only an eye gets: the image itself, or a PDF's pages without a text layer (read
    #: only for a model that sees images).
    pictures: tuple[Picture, ...] = field(default_factory=tuple)


@functools.lru_cache(maxsize=256)
def sees_images(model: str) -> bool:
    """Whether litellm's table says `model` takes images; False for a model it does not know
    (a local model's name): the planner's description is then what it gets. Kept per model:
    every run asks it for two tiers on its way to the first call, and the table is fixed."""
    # Imported here: the prompts (and so the API) import this module, litellm only the engine.
    from roles.models.client import litellm

    try:
        return bool(litellm.supports_vision(model=model))
    except Exception:  # an unknown provider or model
        return False


def tier_sees_images(tier: ModelTier) -> bool:
    """Whether every model of the tier (its model, then its fallbacks) takes images."""
    return all(sees_images(model) for model, _base in tier.endpoints())


def image_part(picture: Picture) -> dict[str, Any]:
    """The content part carrying `picture`, as a data URL (no server fetches anything)."""
    encoded = base64.b64encode(picture.data).decode("ascii")
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{picture.media_type};base64,{encoded}"},
    }


def _parts(pictures: Iterable[Picture]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for picture in pictures:
        parts.append({"type": "text", "text": f"[image: {picture.label}]"})
        parts.append(image_part(picture))
    return parts


def with_pictures(
    messages: Sequence[dict[str, Any]], pictures: Sequence[Picture]
) -> list[dict[str, Any]]:
    """`messages` with `pictures` added to the last user message as image parts, each after
    a text part naming it; the messages unchanged (plain strings) when there are none."""
    out = [dict(m) for m in messages]
    if not pictures:
        return out
    for message in reversed(out):
        if message.get("role") == "user":
            text = message.get("content") or ""
            message["content"] = [{"type": "text", "text": text}, *_parts(pictures)]
            return out
    out.append({"role": "user", "content": _parts(pictures)})
    return out
