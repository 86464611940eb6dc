"""The failures that end a stream or a task inside the engine.

Model failures have their own family (`roles.models.errors.ModelError`); these two are the
engine's: a stream that produced no accepted output, and a task that cannot go on. Their
message is what the task's `error` (and the human) will read.
"""

from __future__ import annotations


class StreamFailed(Exception):
    """A stream could not produce an accepted output; dependants cannot run."""


class TaskFailed(Exception):
    """The task cannot go on: no valid plan, failed streams, rejections used up."""
