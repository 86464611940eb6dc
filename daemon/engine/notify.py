"""The notification hook: a command run whenever a task needs a human.

`notify.command` in the global configuration (e.g. `notify-send`) is run as
`COMMAND... TASK_ID REASON`: split like a shell would (`notify-send -u critical` works) but
never through a shell, so nothing in a reason is ever interpreted. Off when empty. Only the
global file may set it (a project's `.tierd.toml` cannot: it travels with a repository).

The hook never gets in the way of the daemon: it runs as an asyncio subprocess in the
background (the event loop is never blocked and the workflow never waits for it), it is
killed after `timeout_s`, and any failure (a missing program, a non-zero exit, a timeout) is
logged, never raised. It gets no secrets: its environment is the daemon's minus every
variable a model's `api_key_env` names and every variable whose name says it holds a key,
token, secret or password; its standard input is empty. It runs with the user's umask, not
the daemon's private one (`set_hook_umask`), so files it makes are as the user expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("tierd.notify")

#: Seconds a hook may run before it is killed.
DEFAULT_TIMEOUT_S = 10.0
#: Longest reason passed as an argument (a failure reason can be long).
MAX_REASON_CHARS = 500
#: Names of environment variables that hold credentials, whoever set them.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|COOKIE", re.I)

#: The umask hooks run with; None: the process's own. `tierd serve` sets it.
_hook_umask: int | None = None


def set_hook_umask(mask: int | None) -> None:
    """Run hooks with `mask` (the user's umask from before the daemon made its own private)."""
    global _hook_umask
    _hook_umask = mask


def command_argv(command: Any) -> list[str]:
    """The hook's argv prefix from the config value (a string or a list); [] when off."""
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError as exc:
            log.warning("notify.command is not a valid command line (%s); not running it", exc)
            return []
    if isinstance(command, list | tuple) and all(isinstance(p, str) for p in command):
        return [p for p in command if p]
    return []


def clean_env(env: Mapping[str, str], key_names: Iterable[str] = ()) -> dict[str, str]:
    """`env` without the variables that hold model keys or look like credentials."""
    drop = {k for k in key_names if k}
    return {k: v for k, v in env.items() if k not in drop and not SECRET_NAME.search(k)}


class Notifier:
    """Runs hooks in the background; `aclose()` waits briefly for those still running."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._running: set[asyncio.Task[None]] = set()

    def notify(
        self, command: Any, task_id: str, reason: str, key_names: Iterable[str] = ()
    ) -> asyncio.Task[None] | None:
        """Start the hook for one attention event; returns at once (None when it is off)."""
        argv = command_argv(command)
        if not argv:
            return None
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        env = clean_env(os.environ, key_names)
        task = asyncio.get_running_loop().create_task(
            self._run([*argv, task_id, reason], env), name=f"tierd-notify-{task_id}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _run(self, argv: list[str], env: dict[str, str]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                umask=-1 if _hook_umask is None else _hook_umask,
            )
        except Exception as exc:  # no such program, not executable, ...
            log.warning("notify.command %r could not be started: %s", argv[0], exc)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            log.warning(
                "notify.command %r did not finish within %.0fs; killed it", argv[0], self.timeout_s
            )
            return
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        except Exception as exc:
            log.warning("notify.command %r failed: %s", argv[0], exc)
            return
        if proc.returncode:
            log.warning(
                "notify.command %r exited with status %s: %s",
                argv[0],
                proc.returncode,
                (err or b"").decode("utf-8", "replace").strip()[:300],
            )

    async def aclose(self, grace_s: float = 2.0) -> None:
        """Give running hooks `grace_s` to finish, then kill what is left."""
        if not self._running:
            return
        pending = set(self._running)
        _, still = await asyncio.wait(pending, timeout=grace_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=grace_s)
