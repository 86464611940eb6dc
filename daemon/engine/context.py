"""What the parts of one task run share: the task, its settings and rules, the way to a model,
and its attachments (`TaskAttachments`)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.engine.errors import TaskFailed
from daemon.engine.settings import TaskSettings
from daemon.engine.streams import StreamBook, StreamState
from daemon.store.store import AttachmentRow, Store, TaskRow
from roles.calls import Caller
from roles.models.content import AttachmentContent, AttachmentKind, Picture
from roles.plan.schema import Plan
from roles.plan.validator import PlanRules
from roles.prompts import PromptRules, goal_line

__all__ = ["TaskAttachments", "TaskContext"]


@dataclass
class TaskAttachments:
    """The task's attachments as its prompts use them: the rows read once when the run starts,
    the files read when a prompt needs them (on a worker thread).

    The planner sees them all; an executor only its stream's (`for_stream`), their images
    when its tier sees images, else the planner's `descriptions` (set from the plan).
    """

    rows: list[AttachmentRow] = field(default_factory=list)
    planner_sees_images: bool = False
    executor_sees_images: bool = False
    #: The planner's description of each attachment it described, by name (from the plan).
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [row.name for row in self.rows]

    def needing_description(self) -> list[str]:
        """The attachments an executor of this task cannot see all of (images, PDF pages
        without text) when its tier does not see images; [] when it does."""
        if self.executor_sees_images:
            return []
        return [row.name for row in self.rows if _visual(row)]

    def use_plan(self, plan: Plan) -> None:
        """Take the plan's descriptions (a resumed run reads them from the stored plan)."""
        self.descriptions = plan.descriptions()

    def delivered(self, plan: Plan) -> Plan:
        """`plan` with each stream's `attachment_delivery`: how each of its attachments
        reaches its executor or coder (images, their description, text, or both)."""
        by_name = {row.name: row for row in self.rows}
        streams = []
        for spec in plan.streams:
            delivery = {}
            for name in dict.fromkeys(spec.attachments):
                row = by_name.get(name)
                if row is not None:
                    delivery[name] = self._delivery(row)
            streams.append(spec.model_copy(update={"attachment_delivery": delivery}))
        return plan.model_copy(update={"streams": streams})

    def _delivery(self, row: AttachmentRow) -> str:
        seen = "images" if self.executor_sees_images else "description"
        if row.kind == "image":
            return seen
        return f"text and {seen}" if _visual(row) else "text"

    async def contents(
        self, names: Iterable[str] | None = None, *, pictures: bool
    ) -> list[AttachmentContent]:
        """The attachments named (all when None), in the task's order, with their pictures
        when `pictures`. TaskFailed when a file is gone (the task's data was removed)."""
        wanted = None if names is None else set(names)
        rows = [row for row in self.rows if wanted is None or row.name in wanted]
        if not rows:
            return []
        try:
            return await asyncio.to_thread(lambda: [_read(row, pictures) for row in rows])
        except OSError as exc:
            raise TaskFailed(
                f"an attachment's file cannot be read ({exc.strerror or exc}: "
                f"{exc.filename}): the task's data was removed or damaged"
            ) from exc

    async def for_stream(self, st: StreamState, book: StreamBook) -> list[AttachmentContent]:
        """The attachments of `st`'s executor: those its stream names; a sub-stream of a
        split only its parents', all of them when it names none."""
        names = list(dict.fromkeys(st.spec.attachments))
        parent = st.parent
        while parent is not None:
            above = book[parent]
            theirs = list(dict.fromkeys(above.spec.attachments))
            names = [n for n in names if n in theirs] if names else theirs
            parent = above.parent
        return await self.contents(names, pictures=self.executor_sees_images)


def _visual(row: AttachmentRow) -> bool:
    """Whether part of the attachment is only an image: an image, or a PDF with pages
    without a text layer (rendered or not)."""
    return row.kind == "image" or bool(json.loads(row.facts_json or "{}").get("image_pages"))


def _read(row: AttachmentRow, pictures: bool) -> AttachmentContent:
    """One attachment's content from its folder (blocking)."""
    folder = Path(row.folder)
    text = (folder / row.text_file).read_text(encoding="utf-8") if row.text_file else ""
    shown: list[Picture] = []
    if pictures and row.kind == "image":
        shown.append(Picture(row.name, row.media_type, (folder / row.sha256).read_bytes()))
    elif pictures:
        for render in json.loads(row.renders_json or "[]"):
            label = f"{row.name}, page {render['page']}"
            shown.append(Picture(label, "image/png", (folder / render["file"]).read_bytes()))
    kinds: dict[str, AttachmentKind] = {"image": "image", "pdf": "pdf"}
    return AttachmentContent(
        name=row.name,
        media_type=row.media_type,
        kind=kinds.get(row.kind, "table"),
        size=row.size,
        text=text,
        summary=row.summary,
        visual=_visual(row),
        pictures=tuple(shown),
    )


@dataclass(frozen=True)
class TaskContext:
    """One task run's fixed facts: read once when the run starts, the same for every part."""

    store: Store
    row: TaskRow
    settings: TaskSettings
    #: The rules as the prompts state them, and as the validator enforces them.
    rules: PromptRules
    plan_rules: PlanRules
    #: Every model call of the run goes through this (the task's `TaskGateway`).
    call: Caller
    #: Returns once no model call of the run is in flight (`TaskGateway.settled`).
    settled: Callable[[], Awaitable[None]]
    #: Reads the step memo (`TaskGateway.saved`: not for keys saved after the run began).
    saved: Callable[[str], Awaitable[Any | None]]
    #: The files handed over with the task (none for most tasks).
    attachments: TaskAttachments = field(default_factory=TaskAttachments)

    @classmethod
    def of(
        cls,
        store: Store,
        row: TaskRow,
        settings: TaskSettings,
        call: Caller,
        settled: Callable[[], Awaitable[None]] | None = None,
        attachments: TaskAttachments | None = None,
        saved: Callable[[str], Awaitable[Any | None]] | None = None,
    ) -> TaskContext:
        # A task with a repository (its code_json names it) is a code task.
        rules = settings.prompt_rules(row.goal, code=bool(row.code_json))
        attachments = attachments or TaskAttachments()
        # Streams (and sub-streams of splits) may name only the task's attachments.
        plan_rules = replace(rules.to_plan_rules(), attachments=attachments.names)
        settled = settled or _nothing_flies
        saved = saved or functools.partial(store.get_step, row.id)
        return cls(store, row, settings, rules, plan_rules, call, settled, saved, attachments)

    @property
    def task_id(self) -> str:
        return self.row.id

    @property
    def goal_line(self) -> str:
        return goal_line(self.row.goal)


async def _nothing_flies() -> None:
    """`settled` of a caller that does not count its calls in flight."""
