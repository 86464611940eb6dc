"""The JSON-RPC methods: each one's name, params model, result model and service call.

One table, read by the dispatcher (to call), `rpc/discover` (to describe) and the OpenAPI
document of /rpc (to list the names).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from daemon.service.deletion import Deleted
from daemon.service.params import (
    AnswerParams,
    ApproveParams,
    ConfigGetParams,
    ConfigSetParams,
    ListParams,
    NoParams,
    SubmitParams,
    TaskIdParams,
)
from daemon.service.results import (
    Answered,
    Canceled,
    ConfigDocument,
    ConfigEntry,
    DaemonStatus,
    Decided,
    Submitted,
    TaskDetail,
    TaskDiff,
    TaskPage,
)
from daemon.service.service import Service

#: The method the dispatcher answers itself, with the OpenRPC document.
DISCOVER = "rpc/discover"


@dataclass(frozen=True)
class Method:
    name: str
    params: type[BaseModel]
    #: The result's type: a model, or a union of models (`config/get`).
    result: Any
    summary: str
    call: Callable[[Service, Any], Awaitable[BaseModel]]
    #: True: the result is what the store holds and nothing else (no clock, no process
    #: state, no files), so it is kept as JSON until the store next writes (`detail_cache`).
    store_view: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "task/submit",
            SubmitParams,
            Submitted,
            "Submit a task; returns its id at once.",
            lambda s, p: s.submit(p),
        ),
        Method(
            "task/get",
            TaskIdParams,
            TaskDetail,
            "A task with its streams, verdicts, result and report.",
            lambda s, p: s.get(p),
            store_view=True,
        ),
        Method(
            "task/list",
            ListParams,
            TaskPage,
            "Tasks, newest first, paged by cursor.",
            lambda s, p: s.list(p),
            store_view=True,
        ),
        Method(
            "task/cancel",
            TaskIdParams,
            Canceled,
            "Cancel a live task at once.",
            lambda s, p: s.cancel(p),
        ),
        Method(
            "task/answer",
            AnswerParams,
            Answered,
            "Answer open questions; resumes the waiting streams.",
            lambda s, p: s.answer(p),
        ),
        Method(
            "task/approve",
            ApproveParams,
            Decided,
            "Approve or reject a result awaiting approval.",
            lambda s, p: s.approve(p),
        ),
        Method(
            "task/delete",
            TaskIdParams,
            Deleted,
            "Delete an ended task (completed, failed, canceled) and all tierd keeps of it: "
            "its rows, files, checkpoints, worktrees and branches, but a result branch you "
            "approved as a branch and a patch written for you. A live task: -32002.",
            lambda s, p: s.delete(p),
        ),
        Method(
            "task/diff",
            TaskIdParams,
            TaskDiff,
            "A code task's merged result against its base: files with +/-, and the patch.",
            lambda s, p: s.diff(p),
        ),
        Method(
            "daemon/status",
            NoParams,
            DaemonStatus,
            "Version, pid, uptime, store, task counts, concurrency.",
            lambda s, p: s.status(),
        ),
        Method(
            "config/get",
            ConfigGetParams,
            ConfigDocument | ConfigEntry,
            "The effective configuration, or one key.",
            lambda s, p: s.config_get(p),
        ),
        Method(
            "config/set",
            ConfigSetParams,
            ConfigEntry,
            "Set one key in the user's global configuration.",
            lambda s, p: s.config_set(p),
        ),
    ]
}
