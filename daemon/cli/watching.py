"""Following a task's events for `tierd watch`: the live view kept up to date until the task
ends or waits for a human.

The whole history is replayed first, so watching an old task shows how it ran. A state that
waits for a human ends a `follow` only when it is the task's current state, not a replayed
one that was answered long ago. A dropped event stream is resumed from the last event seen; a
daemon that went away raises DaemonNotRunning. `follow` can be called again after the human
acted (answered, decided): it goes on from the last event seen, with the same view.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from typing import Any

from rich.console import Console
from rich.live import Live

from daemon.cli.client import DaemonNotRunning
from daemon.cli.terminal import clean
from daemon.cli.terminal import console as safe_console
from daemon.cli.views import HUMAN_STATES, TERMINAL_STATES, LiveTask

__all__ = ["CODE_REFRESH_S", "IDLE_S", "Watcher"]

#: A quiet event stream is reopened after this many seconds (from the last event seen), and
#: being quiet tells the watcher it has caught up with the task's history.
IDLE_S = 3.0
#: Seconds between reads of a code task's facts (files, commands, steps) while watching it.
CODE_REFRESH_S = 1.0


class Watcher:
    """One task's live view and where its event stream is."""

    def __init__(
        self,
        client: Any,
        task_id: str,
        *,
        quiet: bool = False,
        console: Console | None = None,
        interactive: bool = False,
    ) -> None:
        task = client.get(task_id)  # an unknown id fails here, before anything is drawn
        self.client = client
        # The full id: `task_id` may be a prefix or @last, which the daemon resolved.
        self.task_id: str = task.get("id") or task_id
        self.quiet = quiet
        self.console = console or safe_console()
        self.view = LiveTask(
            self.task_id,
            goal=clean(task.get("goal", "")),
            started=task.get("created_at"),
            width=self.console.width,
            console=self.console,
            interactive=interactive,
        )
        self.last_id: int | None = None
        # A code task's facts are in task/get, not in events: read again now and then.
        self.view.code.update(task)
        self.code_task = task.get("code") is not None and not quiet
        self._refreshed = time.monotonic()

    def _final(self) -> dict[str, Any]:
        done: dict[str, Any] = self.client.get(self.task_id)
        self.view.code.update(done)
        return done

    def _current_wait(self, ev: dict[str, Any]) -> bool:
        """Is this human-waiting state the task's latest move (not history)?"""
        now = self.client.get(self.task_id)
        return bool(now["state"] == ev["data"]["state"] and now["updated_at"] <= ev["created_at"])

    def _live(self) -> Live | contextlib.nullcontext[None]:
        if self.quiet:
            return contextlib.nullcontext()
        self.view.final = False
        return Live(
            get_renderable=self.view.render,
            console=self.console,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            # The view fits the terminal itself (`LiveTask.render`); crop is the backstop.
            vertical_overflow="crop",
        )

    def follow(self) -> dict[str, Any]:
        """Follow until the task ends or waits for a human; return the task (`task/get`)."""
        try:
            with self._live():
                try:
                    return self._follow()
                finally:
                    # The last frame, drawn as Live stops, is the whole view.
                    self.view.final = True
        finally:
            if not self.quiet and not self.console.is_terminal:
                # Live ends its last frame with a newline only on a terminal: a pipe gets
                # one too, so what follows starts on a line of its own.
                self.console.line()

    def _follow(self) -> dict[str, Any]:
        client, task_id = self.client, self.task_id
        while True:
            try:
                for ev in client.events(task_id, last_event_id=self.last_id, timeout=IDLE_S):
                    self.last_id = ev["id"]
                    self.view.apply(ev)
                    if self.code_task and time.monotonic() - self._refreshed >= CODE_REFRESH_S:
                        self.view.code.update(client.get(task_id))
                        self._refreshed = time.monotonic()
                    if ev.get("type") != "task.state":
                        continue
                    if self.view.state in TERMINAL_STATES or (
                        self.view.state in HUMAN_STATES and self._current_wait(ev)
                    ):
                        return self._final()
                # The stream ended by itself: the task has ended (its events replayed).
                if client.get(task_id)["state"] in TERMINAL_STATES | HUMAN_STATES:
                    return self._final()
            except TimeoutError:
                # Quiet: the history is replayed. A task waiting for a human stays quiet.
                if client.get(task_id)["state"] in HUMAN_STATES:
                    return self._final()
            except (OSError, http.client.HTTPException, DaemonNotRunning):
                # A dropped stream: resume, unless the daemon is gone (client.get raises).
                client.get(task_id)
                time.sleep(0.2)
