"""`tierd diff TASK` and `tierd apply TASK`: a code task's merged change, seen and applied.

`diff` prints the patch, colored and through a pager on a terminal (`$PAGER`, else `less -FRX`),
plain when piped (so `tierd diff T | git apply` works); `--stat` prints only the file list.
`apply` approves the result and applies it as asked: `--merge` into your current branch (refused,
changing nothing, when it would touch your uncommitted work or conflict with your commits),
`--patch` (a patch file, its path printed), or the default: leave it on its branch.
Everything shown is cleaned of terminal control sequences: file contents come from a repository.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Any

from daemon.cli.output import EXIT_OK, client, print_json
from daemon.cli.terminal import clean

__all__ = ["cmd_apply", "cmd_diff", "colored", "stat_lines"]

_COLORS = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"}
_RESET = "\x1b[0m"


def stat_lines(diff: dict[str, Any]) -> list[str]:
    """One line per file (+/-), then a total, as `git diff --stat` would summarise."""
    lines, ins, dels = [], 0, 0
    for f in diff["files"]:
        a, d = f.get("insertions"), f.get("deletions")
        ins, dels = ins + (a or 0), dels + (d or 0)
        counts = "binary" if a is None else f"+{a} -{d}"
        lines.append(f" {clean(f['path'])}  {counts}")
    lines.append(
        f" {len(diff['files'])} file(s) changed, +{ins} -{dels} "
        f"({clean(diff['branch'])} at {diff['head'][:12]})"
    )
    return lines


def colored(patch: str) -> str:
    """The patch with added, removed and hunk lines colored (file headers bold)."""
    out = []
    for raw in patch.splitlines():
        line = clean(raw)
        if line.startswith(("+++", "---", "diff --git")):
            out.append(f"\x1b[1m{line}{_RESET}")
        elif line[:1] in _COLORS:
            out.append(f"{_COLORS[line[:1]]}{line}{_RESET}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _page(text: str) -> None:
    pager = os.environ.get("PAGER") or "less -FRX"
    try:
        subprocess.run(shlex.split(pager), input=text, text=True, check=False)
    except OSError:  # no pager here: print it
        sys.stdout.write(text)


def cmd_diff(args: argparse.Namespace) -> int:
    with client() as daemon:
        diff = daemon.rpc("task/diff", {"task_id": args.task_id})
    if args.json:
        print_json(diff)
    elif args.stat:
        print("\n".join(stat_lines(diff)))
    elif sys.stdout.isatty():
        _page("\n".join(stat_lines(diff)) + "\n\n" + colored(diff["patch"]))
    else:
        # Piped: the patch exactly as git made it (`tierd diff T | git apply`).
        sys.stdout.write(diff["patch"])
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    how = "merge" if args.merge else ("patch" if args.patch else "branch")
    with client() as daemon:
        out = daemon.approve(args.task_id, "approve", None, how)
    if args.json:
        print_json(out)
        return EXIT_OK
    applied = out.get("applied") or {}
    if applied.get("how") == "merge":
        again = " (it was merged already)" if applied.get("already") else ""
        print(
            f"merged into {clean(applied['branch'])} at {applied['commit'][:12]}{again}: "
            f"approved {args.task_id}"
        )
    elif applied.get("how") == "patch":
        print(f"patch written to {clean(applied['path'])}: approved {args.task_id}")
    else:
        print(f"approved {args.task_id}; the result stays on {clean(applied.get('branch', '?'))}")
    return EXIT_OK
