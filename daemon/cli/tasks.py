"""The commands about tasks, each one or two calls to the running daemon: submit, ls, show,
watch, answer, approve, cancel, rm, and the daemon's status.

Every command that takes a task takes its id, a unique prefix of it, or `@last` (the daemon
resolves them, `service.task_views`). They load rich and the views only to print, and never
the engine: see `output.py`.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.cli.output import (
    EXIT_ERROR,
    EXIT_NEEDS_HUMAN,
    EXIT_OK,
    EXIT_USAGE,
    client,
    console,
    err,
    print_json,
)
from daemon.cli.terminal import clean, clean_data
from daemon.service.attachments.kinds import guess_media_type

if TYPE_CHECKING:
    from daemon.cli.client import Client

__all__ = [
    "cmd_answer",
    "cmd_approve",
    "cmd_cancel",
    "cmd_ls",
    "cmd_open",
    "cmd_rm",
    "cmd_show",
    "cmd_status",
    "cmd_submit",
    "cmd_watch",
]


def _read_context(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    return Path(path).read_text(encoding="utf-8")


def _submit_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The task options the flags ask for; None (after saying why) when they cannot be used."""
    options: dict[str, Any] = {}
    if args.project_dir:
        project = Path(args.project_dir).expanduser().resolve()
        if not project.is_dir():
            err(f"--project-dir: no such directory: {project}")
            return None
        options["project_dir"] = str(project)
    if args.approval:
        options["approval"] = "required"
    if args.parallelize:
        options["parallelize"] = args.parallelize
    if args.max_streams:
        options["max_streams"] = args.max_streams
    return options


def _code_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The code task the flags ask for, its path made absolute from here (the daemon takes
    only absolute paths: its own working directory means nothing to the user); None (after
    saying why) when the flags do not fit together."""
    if args.repo is None:
        for flag, used in (
            ("--base", args.base),
            ("--include-uncommitted", args.include_uncommitted),
        ):
            if used:
                err(f"{flag} goes with --repo PATH (a code task)")
                return None
        return {}
    if not args.repo.strip():
        err("--repo: give the path of a git work tree")
        return None
    # Joined, not normalised: `link/..` is for the daemon to resolve as the file system does.
    code: dict[str, Any] = {"repo": str(Path.cwd() / Path(args.repo).expanduser())}
    if args.base is not None:
        code["base"] = args.base
    if args.include_uncommitted:
        code["include_uncommitted"] = True
    return code


def _attachments(paths: list[str] | None) -> list[dict[str, Any]] | None:
    """The files `--attach` names, as the submit takes them (name, media type told by the
    content, base64); None (after saying why) when one cannot be read."""
    attachments = []
    for path in paths or []:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            err(f"cannot read --attach {path}: {exc.strerror or exc}")
            return None
        name = Path(path).name
        attachments.append(
            {
                "name": name,
                "media_type": guess_media_type(name, data),
                "data": base64.b64encode(data).decode("ascii"),
            }
        )
    return attachments


def _submit(daemon: Client, params: dict[str, Any]) -> dict[str, Any]:
    """task/submit with attachments (`Client.submit` takes none yet), retry-safe as it is:
    one idempotency key, and a dropped connection resends once with it."""
    from daemon.cli.client import DaemonNotResponding, DaemonNotRunning

    params.setdefault("idempotency_key", secrets.token_urlsafe(24))
    try:
        result: dict[str, Any] = daemon.rpc("task/submit", params)
    except DaemonNotResponding:
        raise  # it may still be working on it: waiting again would double the wait
    except DaemonNotRunning:
        result = daemon.rpc("task/submit", params)
    return result


def cmd_submit(args: argparse.Namespace) -> int:
    code = _code_args(args)
    if code is None:
        return EXIT_USAGE
    attachments = _attachments(args.attach)
    if attachments is None:
        return EXIT_USAGE
    context = ""
    if args.context_file:
        try:
            context = _read_context(args.context_file)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            err(f"cannot read --context-file {args.context_file}: {reason}")
            return EXIT_USAGE
    options = _submit_options(args)
    if options is None:
        return EXIT_USAGE
    with client() as daemon:
        if attachments:
            params = {"goal": args.goal, "context": context, "options": options, **code}
            if args.idempotency_key:
                params["idempotency_key"] = args.idempotency_key
            out = _submit(daemon, {**params, "attachments": attachments})
        else:
            out = daemon.submit(
                args.goal, context, options, idempotency_key=args.idempotency_key, **code
            )
        if args.watch:
            print(f"submitted {out['task_id']}", file=sys.stderr)
            return watch(daemon, out["task_id"], as_json=args.json)
    if args.json:
        print_json(out)
    else:
        print(out["task_id"])
    return EXIT_OK


#: The states of a task that waits for the human (`tierd ls --needs-me`).
NEEDS_ME = ["input_required", "awaiting_approval"]


def cmd_ls(args: argparse.Namespace) -> int:
    states = list(dict.fromkeys([*(NEEDS_ME if args.needs_me else []), *(args.state or [])]))
    with client() as daemon:
        out = daemon.list(state=states or None, limit=args.limit, cursor=args.cursor)
    if args.json:
        print_json(out)
        return EXIT_OK
    if not out["tasks"]:
        where = " waiting for you" if args.needs_me and not args.state else ""
        where = where or (f" in state {' or '.join(states)}" if states else "")
        print(f"no tasks{where}", file=sys.stderr)
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    from daemon.cli.style import STYLE

    tasks = clean_data(out["tasks"])
    # A code task's repository by its directory name, in a column only when a task has one.
    repos = any(t.get("repo") for t in tasks)
    table = Table("id", "state", "submitted", box=None, header_style="dim")
    if repos:
        table.add_column("repo", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("goal")
    for t in tasks:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created_at"]))
        cells: list[Text | str] = [
            Text(t["id"]),
            Text(t["state"], style=STYLE.get(t["state"], "")),
            when,
        ]
        if repos:
            cells.append(Text(Path(t["repo"]).name if t.get("repo") else ""))
        goal = t["goal"].splitlines()[0] if t["goal"] else ""
        table.add_row(*cells, Text(goal, no_wrap=True, overflow="ellipsis"))
    console().print(table)
    if out.get("next_cursor"):
        print(f"more: tierd ls --cursor {clean(out['next_cursor'])}", file=sys.stderr)
    return EXIT_OK


def _decisions(daemon: Client, task: dict[str, Any]) -> list[dict[str, Any]]:
    """The human's decisions on the task's result, from its events (only a task that asked
    for approval has any; the events are replayed, not followed)."""
    if (task.get("options") or {}).get("approval") != "required":
        return []
    return [
        ev.get("data") or {}
        for ev in daemon.events(task["id"], timeout=30.0, follow=False)
        if ev.get("type") == "task.decision"
    ]


def cmd_show(args: argparse.Namespace) -> int:
    with client() as daemon:
        task = daemon.get(args.task_id)
        if args.result:
            return _print_result_only(task)
        if args.json:
            print_json(task)
            return EXIT_OK
        decisions = _decisions(daemon, task)
    from daemon.cli.views import print_task

    print_task(task, console(), decisions=decisions)
    return EXIT_OK


def _print_result_only(task: dict[str, Any]) -> int:
    """`show --result`: the result as it is (Markdown), for a pipe; with --json, as JSON."""
    result = task.get("result")
    if not result:
        err(f"task {task['id']} has no result (it is {task['state']})")
        return EXIT_ERROR
    text = clean(result)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    with client() as daemon:
        return watch(daemon, args.task_id, as_json=args.json)


def _max_revisions(daemon: Client, known: int | None) -> int | None:
    """review.max_revisions as an event said, else as the daemon's configuration has it."""
    from daemon.cli.client import ApiError

    if known is not None:
        return known
    try:
        value = daemon.config_get("review.max_revisions").get("value")
    except ApiError:
        return None
    return value if isinstance(value, int) else None


def _act(daemon: Client, watcher: Any, task: dict[str, Any]) -> bool:
    """Ask the human at the terminal; True once their answers or decision are sent."""
    from daemon.cli.client import ApiError
    from daemon.cli.decide import ask_answers, ask_decision

    out, task_id, view = watcher.console, watcher.task_id, watcher.view
    try:
        if task["state"] == "input_required":
            answers = ask_answers(task, out)
            if not answers:
                return False
            daemon.answer(task_id, answers)
            print(f"answered {', '.join(answers)}; the task goes on", file=sys.stderr)
            return True
        limit = _max_revisions(daemon, view.max_revisions)
        decided = ask_decision(task_id, view.revision, limit, out)
        if decided is None:
            return False
        daemon.approve(task_id, decided[0], decided[1])
        print(f"{'approved' if decided[0] == 'approve' else 'rejected'} {task_id}", file=sys.stderr)
        return True
    except ApiError as exc:  # decided elsewhere meanwhile, the task ended, ...
        err(exc.message)
        return True  # the watch goes on and shows where the task is now


def watch(daemon: Client, task_id: str, *, as_json: bool) -> int:
    """Follow a task until it ends or waits for a human; the exit code says which. The
    result is shown when there is one to see; on a terminal the human acts right here."""
    from daemon.cli.decide import interactive, print_result
    from daemon.cli.watching import Watcher

    ask = not as_json and interactive()
    watcher = Watcher(
        daemon, task_id, quiet=as_json, console=None if as_json else console(), interactive=ask
    )
    shown: str | None = None
    while True:
        task = watcher.follow()
        state = task["state"]
        if as_json:
            print_json(task)
            break
        # Shown before every approval (nobody approves what they have not seen), and at
        # the end unless it is the result just approved.
        fresh = state == "awaiting_approval" or task.get("result") != shown
        if state in {"completed", "awaiting_approval"} and task.get("result") and fresh:
            print_result(task, watcher.console, revision=watcher.view.revision)
            shown = task.get("result")
        if not (ask and state in {"input_required", "awaiting_approval"}):
            break
        if not _act(daemon, watcher, task):
            break
    if not as_json:
        _say_where(task, ask)
    if state == "completed":
        return EXIT_OK
    if state in {"input_required", "awaiting_approval"}:
        return EXIT_NEEDS_HUMAN
    return EXIT_ERROR


def _say_where(task: dict[str, Any], asked: bool) -> None:
    """Where the watch left the task, on stderr (the live view has the hints otherwise)."""
    from daemon.cli.decide import later_hint

    state = task["state"]
    if state == "completed":
        print(
            f"completed: `tierd show {clean(task['id'])}` has the streams and the report",
            file=sys.stderr,
        )
    elif state in {"failed", "canceled"}:
        print(clean(f"{state}: {task.get('error') or ''}".rstrip(": ")), file=sys.stderr)
    elif asked:
        print(clean(later_hint(task)), file=sys.stderr)


def cmd_answer(args: argparse.Namespace) -> int:
    with client() as daemon:
        out = daemon.answer(args.task_id, {args.question_id: args.text})
    if args.json:
        print_json(out)
    else:
        print(clean(f"answered {', '.join(out['answered'])}; task {args.task_id} goes on"))
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    decision = "reject" if args.reject else "approve"
    if args.reject and not (args.comment or "").strip():
        err('--reject needs --comment "what should change": the revision is made from it')
        return EXIT_USAGE
    with client() as daemon:
        out = daemon.approve(args.task_id, decision, args.comment, getattr(args, "apply", None))
    if args.json:
        print_json(out)
    else:
        print(f"{'rejected' if args.reject else 'approved'} {args.task_id}")
        applied = out.get("applied") or {}
        if applied.get("how") == "merge":
            print(f"merged into {clean(applied['branch'])} at {applied['commit'][:12]}")
        elif applied.get("how") == "patch":
            print(f"patch written to {clean(applied['path'])}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with client() as daemon:
        out = daemon.cancel(args.task_id)
    if args.json:
        print_json(out)
    else:
        print(f"canceled {args.task_id}")
    return EXIT_OK


def _say_deleted(out: dict[str, Any]) -> None:
    """What one deletion removed, and what stays the user's."""
    removed, kept = out["removed"], out["kept"]
    parts = [f"{sum(removed['rows'].values())} records"]
    parts += ["its files"] if removed["folder"] else []
    parts += ["its checkpoints"] if removed["checkpoints"] else []
    if removed["worktrees"]:
        parts.append(f"{removed['worktrees']} worktree(s)")
    if removed["branches"]:
        parts.append(f"{len(removed['branches'])} branch(es)")
    print(clean(f"deleted {out['task_id']} ({out['state']}): {', '.join(parts)}"))
    if kept.get("branch"):
        print(clean(f"  kept branch {kept['branch']}: you approved it as a branch, it is yours"))
    if kept.get("patch"):
        print(clean(f"  kept your patch {kept['patch']}"))
    for why in kept.get("left") or []:
        print(clean(f"  left {why}"))
    for what in out.get("incomplete") or []:
        print(clean(f"  not removed yet (the daemon's next start removes it): {what}"))


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete each task named; one that cannot be is said on stderr and the others go on."""
    from daemon.cli.client import ApiError

    deleted: list[dict[str, Any]] = []
    failed = False
    with client() as daemon:
        for task_id in args.task_ids:
            try:
                out = daemon.delete(task_id)
            except ApiError as exc:
                err(exc.message)
                failed = True
                continue
            deleted.append(out)
            if not args.json:
                _say_deleted(out)
    if args.json:
        print_json(deleted)
    return EXIT_ERROR if failed else EXIT_OK


def cmd_open(args: argparse.Namespace) -> int:
    """Print a one-time dashboard login link and open it in a browser, if there is one."""
    with client() as daemon:
        link = daemon.login_link()
    if args.json:
        print_json(link)
        return EXIT_OK
    print(link["url"])
    print(f"one-time link: it works once, within {link['expires_in_s']:g} s", file=sys.stderr)
    if not args.no_browser:
        import webbrowser

        if not webbrowser.open(link["url"], new=2):
            print("no browser found here: open the link above in one", file=sys.stderr)
    return EXIT_OK


def _config_problem() -> str | None:
    """Why the global config file is broken (path and line), or None. The daemon refuses
    new tasks while it is (it reads the file again at each submit)."""
    from daemon.config.layers import ConfigError, load_config
    from daemon.home.paths import resolve_homes

    try:
        load_config(resolve_homes().config_file)
    except ConfigError as exc:
        return str(exc)
    return None


def cmd_status(args: argparse.Namespace) -> int:
    from daemon.cli.client import DaemonNotRunning

    problem = _config_problem()
    try:
        with client() as daemon:
            out = daemon.status()
            url = daemon.url
    except DaemonNotRunning:
        if problem:  # said with no daemon running too: none would start on it
            err(f"the configuration file is broken: {problem}")
        raise
    if args.json:
        print_json({**out, "url": url, "config_error": problem})
        return EXIT_OK
    out, url = clean_data(out), clean(url)
    c = out.get("concurrency") or {}
    busy = {k: v for k, v in out["tasks"].items() if v}
    print(f"tierd {out['version']} at {url} (pid {out['pid']}, up {out['uptime_s']:.0f}s)")
    print(f"store: {out['store']}")
    print("tasks: " + (", ".join(f"{v} {k}" for k, v in busy.items()) or "none"))
    if c:
        print(
            f"agents: {c.get('in_flight', 0)} running, {c.get('waiting', 0)} waiting, "
            f"limit {c.get('limit')} of ceiling {c.get('ceiling')}"
            + (f" ({c['reason']})" if c.get("reason") else "")
        )
    _executors_line(out.get("executors") or {})
    if problem:
        print(clean(f"config: BROKEN: {problem}; new tasks are refused until it is fixed"))
    return EXIT_OK


def _executors_line(x: dict[str, Any]) -> None:
    """Where code streams work: said only for a cluster (the local backend is the default)."""
    if x.get("backend") != "ray":
        return
    where = x.get("address") or "a local Ray"
    if not x.get("driver"):
        print(f"code streams: on Ray ({where}); not connected yet (it connects with the first)")
        return
    nodes = x.get("nodes") or []
    room = sum(int(n.get("room") or 0) for n in nodes)
    print(
        f"code streams: on Ray ({where}): {x.get('streams', 0)} with a worker, "
        f"{len(nodes)} node(s), room for {room} more"
    )
