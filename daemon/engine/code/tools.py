"""The executor's tools, as plain async functions over a stream's `Workspace`.

List files, read a file, search, write a file, edit (exact search-and-replace, or a unified
patch through `git apply`), run the configured test / lint command (or any shell line when
`allow_shell`) in the sandbox, and finish with a summary. The rules hold in code, whatever the
prompt says:
- paths stay inside the worktree (no absolute paths, no `..` out, no symbolic link out, no `.git`);
- writes only within the stream's ownership globs; a refusal tells the model what it may change;
- files matching the secret globs are withheld from reads, edits and search results (a read
  answers that the file exists and is withheld); commands can still use them.
Each tool returns a `ToolResult`: the text the model reads, and the facts an event records (path
or command, exit code, duration). Output is bounded, with a note saying how to see more.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec

from daemon.engine.code.git import GitOutput, git, worktree_env
from daemon.engine.code.paths import Confined, PathGlobs, PathRefused, confine
from daemon.engine.code.preparation import secret_globs
from daemon.engine.code.sandbox import SandboxPolicy, run_sandboxed

__all__ = [
    "CommandName",
    "ToolLimits",
    "ToolResult",
    "Workspace",
    "apply_patch",
    "edit_file",
    "finish",
    "list_files",
    "read_file",
    "run_command",
    "search",
    "write_file",
]

CommandName = Literal["test", "lint", "shell"]
_P = ParamSpec("_P")


@dataclass(frozen=True)
class ToolLimits:
    """Bounds on what one tool call reads, returns or writes."""

    list_entries: int = 400
    read_lines: int = 400
    read_bytes: int = 60_000
    #: Larger files are not read at all (generated or data files; search them instead).
    file_bytes: int = 4_000_000
    search_hits: int = 100
    search_bytes: int = 1_000_000
    line_chars: int = 400
    write_bytes: int = 1_000_000


@dataclass(frozen=True)
class Workspace:
    """What a stream's tools act on, and the rules they keep."""

    root: Path
    #: The worktree's git directory as the repository records it (`Worktree.git_dir`): git
    #: runs with it, never with the worktree's `.git` file, which commands can rewrite.
    git_dir: Path
    #: The paths this stream may change (gitignore-like globs); empty: none.
    ownership: PathGlobs
    secrets: PathGlobs = field(default_factory=secret_globs)
    #: Build it with `Preparation.sandbox` (it binds shared dependency dirs and the git dir).
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)
    test_command: str = ""
    lint_command: str = ""
    allow_shell: bool = False
    limits: ToolLimits = field(default_factory=ToolLimits)

    def commands(self) -> tuple[CommandName, ...]:
        """The `run_command` names available here."""
        names: list[CommandName] = []
        if self.test_command:
            names.append("test")
        if self.lint_command:
            names.append("lint")
        if self.allow_shell:
            names.append("shell")
        return tuple(names)


@dataclass(frozen=True)
class ToolResult:
    """One tool call's outcome: `output` is what the model reads; the rest is for events."""

    tool: str
    ok: bool
    output: str
    path: str | None = None
    command: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    truncated: bool = False
    #: The `finish` tool was called: `output` is the stream's summary.
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        """The result `as_dict` saved (keys it does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _refusals(
    tool: str,
) -> Callable[
    [Callable[Concatenate[Workspace, _P], Awaitable[ToolResult]]],
    Callable[Concatenate[Workspace, _P], Awaitable[ToolResult]],
]:
    """A refused path becomes a result the model reads, not an exception."""

    def wrap(
        fn: Callable[Concatenate[Workspace, _P], Awaitable[ToolResult]],
    ) -> Callable[Concatenate[Workspace, _P], Awaitable[ToolResult]]:
        @functools.wraps(fn)
        async def guarded(ws: Workspace, *args: _P.args, **kwargs: _P.kwargs) -> ToolResult:
            try:
                return await fn(ws, *args, **kwargs)
            except PathRefused as refused:
                return ToolResult(tool=tool, ok=False, output=f"refused: {refused}")

        return guarded

    return wrap


async def _git(
    ws: Workspace,
    *args: str,
    stdin: bytes | None = None,
    check: bool = True,
    max_output_bytes: int | None = None,
) -> GitOutput:
    """git in the worktree, with its recorded git directory and literal pathspecs."""
    env = {**worktree_env(ws.git_dir, ws.root), "GIT_LITERAL_PATHSPECS": "1"}
    return await git(
        ws.root, *args, env=env, stdin=stdin, check=check, max_output_bytes=max_output_bytes
    )


def _not_owned(ws: Workspace, target: Confined) -> str | None:
    """Why `target` may not be changed, or None when the stream owns it."""
    if not ws.ownership:
        return "refused: this stream owns no paths, so it cannot change files."
    if all(ws.ownership.matches(n) for n in target.names()):
        return None
    globs = ", ".join(ws.ownership.patterns)
    return (
        f"refused: {target.rel} is outside this stream's ownership ({globs}). Change only "
        "files matching those globs; if a change elsewhere is needed, say so in your finish "
        "summary."
    )


def _withheld(ws: Workspace, target: Confined) -> str:
    return (
        f"{target.rel} exists but its content is withheld: it matches the secret globs "
        f"({', '.join(ws.secrets.patterns)}). Commands (the tests) can still use it."
    )


def _clip(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[:limit] + f" [... {len(line) - limit} chars]"


@_refusals("list_files")
async def list_files(ws: Workspace, path: str = ".", pattern: str = "") -> ToolResult:
    """Files under `path` (tracked and new, not ignored), optionally filtered by a glob."""
    where = confine(ws.root, path)
    listed = await _git(
        ws, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", where.real_rel
    )
    only = PathGlobs([pattern]) if pattern.strip() else None
    names = sorted(
        {
            p
            for p in listed.out.split("\0")
            if p and not ws.secrets.matches(p) and (only is None or only.matches(p))
        }
    )
    present = await asyncio.to_thread(lambda: [n for n in names if (ws.root / n).exists()])
    cap = ws.limits.list_entries
    lines = [f"{len(present)} files under {where.rel}" + (f" matching {pattern}" if only else "")]
    lines += present[:cap]
    if len(present) > cap:
        lines.append(f"[... {len(present) - cap} more not shown: narrow with path or pattern]")
    return ToolResult(
        tool="list_files", ok=True, output="\n".join(lines), path=where.rel,
        truncated=len(present) > cap,
    )  # fmt: skip


def _load(path: Path, max_bytes: int) -> tuple[str | None, str]:
    """The text of `path`, or None and why not."""
    if not path.exists():
        return None, "does not exist"
    if path.is_dir():
        return None, "is a directory: use list_files"
    size = path.stat().st_size
    if size > max_bytes:
        return None, f"is {size} bytes, over the {max_bytes} bytes read_file takes: use search"
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None, f"is a binary file ({size} bytes): not shown"
    return data.decode("utf-8", errors="replace"), ""


@_refusals("read_file")
async def read_file(
    ws: Workspace, path: str, start_line: int = 1, max_lines: int = 0
) -> ToolResult:
    """Lines of a text file, numbered (`max_lines` 0: as many as the limits allow)."""
    target = confine(ws.root, path)
    if ws.secrets.matches_any(target.names()) and await asyncio.to_thread(target.real.exists):
        return ToolResult(tool="read_file", ok=False, output=_withheld(ws, target), path=target.rel)
    text, why = await asyncio.to_thread(_load, target.real, ws.limits.file_bytes)
    if text is None:
        return ToolResult(tool="read_file", ok=False, output=f"{target.rel} {why}", path=target.rel)
    lines = text.splitlines()
    first = max(start_line, 1)
    want = min(max_lines or ws.limits.read_lines, ws.limits.read_lines)
    shown: list[str] = []
    size = 0
    for n, line in enumerate(lines[first - 1 : first - 1 + want], start=first):
        row = f"{n:>6}\t{_clip(line, ws.limits.line_chars * 4)}"
        size += len(row) + 1
        if size > ws.limits.read_bytes and shown:
            break
        shown.append(row)
    last = first + len(shown) - 1
    more = last < len(lines)
    head = f"{target.rel}: {len(lines)} lines" + (
        f", showing {first}-{last}" if shown else f", nothing from line {first}"
    )
    if more:
        shown.append(f"[... call read_file with start_line={last + 1} for more]")
    body = "\n".join([head + " (line numbers are not part of the file)", *shown])
    return ToolResult(tool="read_file", ok=True, output=body, path=target.rel, truncated=more)


@_refusals("search")
async def search(
    ws: Workspace, pattern: str, path: str = ".", fixed: bool = False, ignore_case: bool = False
) -> ToolResult:
    """`git grep` over the worktree's files (tracked and new, not ignored), bounded."""
    where = confine(ws.root, path)
    if not pattern:
        return ToolResult(tool="search", ok=False, output="the pattern is empty")
    found = await _git(
        ws,
        "grep", "-n", "-z", "-I", "--untracked", "--no-color", "-F" if fixed else "-E",
        *(["-i"] if ignore_case else []), "-e", pattern, "--", where.real_rel,
        check=False, max_output_bytes=ws.limits.search_bytes,
    )  # fmt: skip
    if found.exit_code not in (0, 1):
        return ToolResult(tool="search", ok=False, output=f"search failed: {found.err.strip()}")
    hits: list[str] = []
    for record in found.out.split("\n"):
        fields = record.split("\0")
        if len(fields) != 3 or ws.secrets.matches(fields[0]):
            continue
        hits.append(f"{fields[0]}:{fields[1]}: {_clip(fields[2], ws.limits.line_chars)}")
    cap = ws.limits.search_hits
    more = len(hits) > cap or found.truncated
    lines = [f"{len(hits)}{'+' if found.truncated else ''} matches", *hits[:cap]]
    if more:
        lines.append("[... more matches not shown: narrow the pattern or the path]")
    return ToolResult(
        tool="search", ok=True, output="\n".join(lines), path=where.rel, truncated=more
    )


def _store(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (making its directories); True when the file is new."""
    if path.is_dir():
        raise PathRefused(f"{path.name} is a directory")
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return new


@_refusals("write_file")
async def write_file(ws: Workspace, path: str, content: str) -> ToolResult:
    """Write a whole file (created if missing), within the stream's ownership."""
    target = confine(ws.root, path)
    refusal = _not_owned(ws, target)
    if refusal:
        return ToolResult(tool="write_file", ok=False, output=refusal, path=target.rel)
    data = content.encode("utf-8")
    if len(data) > ws.limits.write_bytes:
        return ToolResult(
            tool="write_file", ok=False, path=target.rel,
            output=f"refused: {len(data)} bytes is over the {ws.limits.write_bytes} bytes limit",
        )  # fmt: skip
    new = await asyncio.to_thread(_store, target.real, data)
    lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
    verb = "created" if new else "wrote"
    return ToolResult(
        tool="write_file", ok=True, path=target.rel,
        output=f"{verb} {target.rel}: {lines} lines, {len(data)} bytes",
    )  # fmt: skip


def _replace(path: Path, old: str, new: str) -> str:
    """Replace the one occurrence of `old` in `path`; the outcome, for the model."""
    if not path.is_file():
        raise PathRefused(f"{path.name} does not exist: use write_file to create it")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused(f"{path.name} is not UTF-8 text: use write_file") from None
    count = text.count(old)
    if count == 0:
        raise PathRefused(
            "the old text was not found: read the file again and copy the text exactly "
            "(without the line numbers read_file shows)"
        )
    if count > 1:
        raise PathRefused(
            f"the old text occurs {count} times: include surrounding lines to make it unique"
        )
    at = text.index(old)
    path.write_bytes(text.replace(old, new, 1).encode("utf-8"))
    line = text.count("\n", 0, at) + 1
    return f"replaced 1 occurrence at line {line}"


@_refusals("edit_file")
async def edit_file(ws: Workspace, path: str, old: str, new: str) -> ToolResult:
    """Replace an exact, unique piece of a file's text, within the stream's ownership."""
    target = confine(ws.root, path)
    refusal = _not_owned(ws, target)
    if refusal:
        return ToolResult(tool="edit_file", ok=False, output=refusal, path=target.rel)
    if ws.secrets.matches_any(target.names()):
        return ToolResult(tool="edit_file", ok=False, output=_withheld(ws, target), path=target.rel)
    if not old:
        return ToolResult(
            tool="edit_file", ok=False, path=target.rel,
            output="the old text is empty: use write_file to create or replace a whole file",
        )  # fmt: skip
    done = await asyncio.to_thread(_replace, target.real, old, new)
    return ToolResult(tool="edit_file", ok=True, output=f"{target.rel}: {done}", path=target.rel)


def _patch_paths(numstat: str) -> list[str]:
    """Paths named by `git apply --numstat -z` (both sides of a rename)."""
    tokens = numstat.split("\0")
    paths, i = [], 0
    while i < len(tokens):
        fields = tokens[i].split("\t")
        if len(fields) == 3 and fields[2] == "" and i + 2 < len(tokens):
            paths += [tokens[i + 1], tokens[i + 2]]
            i += 3
            continue
        if len(fields) == 3:
            paths.append(fields[2])
        i += 1
    return paths


@_refusals("apply_patch")
async def apply_patch(ws: Workspace, patch: str) -> ToolResult:
    """Apply a unified diff (paths as `a/...` and `b/...`) to the worktree's files."""
    if not patch.strip():
        return ToolResult(tool="apply_patch", ok=False, output="the patch is empty")
    data = (patch if patch.endswith("\n") else patch + "\n").encode("utf-8")
    listed = await _git(ws, "apply", "--numstat", "-z", "--recount", "-", stdin=data, check=False)
    paths = _patch_paths(listed.out)
    if listed.exit_code != 0 or not paths:
        why = listed.err.strip() or "it names no file"
        return ToolResult(tool="apply_patch", ok=False, output=f"the patch does not parse: {why}")
    for name in paths:
        target = confine(ws.root, name)
        refusal = _not_owned(ws, target)
        if refusal:
            return ToolResult(tool="apply_patch", ok=False, output=refusal, path=target.rel)
        if ws.secrets.matches_any(target.names()):
            return ToolResult(
                tool="apply_patch", ok=False, output=_withheld(ws, target), path=target.rel
            )
    applied = await _git(
        ws, "apply", "--recount", "--whitespace=nowarn", "-", stdin=data, check=False
    )
    if applied.exit_code != 0:
        return ToolResult(
            tool="apply_patch", ok=False,
            output=f"the patch does not apply: {applied.err.strip()}. Read the file again and "
            "make the patch against its current content, or use edit_file.",
        )  # fmt: skip
    names = ", ".join(dict.fromkeys(paths))
    return ToolResult(tool="apply_patch", ok=True, output=f"applied to {names}", path=paths[0])


async def run_command(ws: Workspace, name: CommandName = "test", command: str = "") -> ToolResult:
    """Run the configured test or lint command, or (with `allow_shell`) a shell line, in the
    sandbox. Raises `SandboxUnavailable` when commands cannot be sandboxed here."""
    configured = {"test": ws.test_command, "lint": ws.lint_command}
    if name == "shell":
        line = command.strip() if ws.allow_shell else ""
        why = "shell commands are off ([code] allow_shell = false)" if not ws.allow_shell else ""
        why = why or ("" if line else "give the shell command to run")
    else:
        line = configured.get(name, "")
        why = "" if line else f"no {name} command is configured ([code] {name}_command)"
    if why:
        available = ", ".join(ws.commands()) or "none"
        return ToolResult(
            tool="run_command", ok=False, output=f"refused: {why}; available: {available}"
        )
    done = await run_sandboxed(line, ws.root, ws.sandbox)
    return ToolResult(
        tool="run_command",
        ok=done.ok,
        output=f"$ {line}\n{done.output.rstrip()}\n[{done.describe()}]",
        command=line,
        exit_code=done.exit_code,
        duration_s=round(done.duration_s, 3),
        truncated=done.truncated,
    )


async def finish(ws: Workspace, summary: str) -> ToolResult:
    """End the stream's work with a summary of what was done (and what was not)."""
    text = summary.strip() or "(no summary)"
    return ToolResult(tool="finish", ok=True, output=text, finished=True)
