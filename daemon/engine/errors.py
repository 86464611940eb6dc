"""The failures that end a stream or a task inside the engine, and the one that stops it.

Model failures have their own family (`roles.models.errors.ModelError`); these two are the
engine's: a stream that produced no accepted output, and a task that cannot go on. Their
message is what the task's `error` (and the human) will read. `CheckpointsDamaged` is the
engine's own start-up failure: the daemon does not run on a checkpoint file it cannot read.
"""

from __future__ import annotations


class StreamFailed(Exception):
    """A stream could not produce an accepted output; dependants cannot run."""


class TaskFailed(Exception):
    """The task cannot go on: no valid plan, failed streams, rejections used up."""


class CheckpointsDamaged(RuntimeError):
    """The checkpoint database cannot be read: the daemon must not start on it.

    A configuration-class problem, not a task's: the message names the file and what to do.
    Moving the file away loses nothing a task needs: every finished step is in the task
    store's step memo, so unfinished tasks resume from there under a fresh checkpoint file.
    """

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"the checkpoint database {path} is damaged ({detail}). Move it away (with its "
            f"-wal and -shm files, e.g. `mv {path} {path}.damaged`) and start tierd again: "
            "it makes a fresh one, and unfinished tasks resume from their saved steps"
        )
        self.path = path
        self.detail = detail
