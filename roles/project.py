"""What the roles are told about the repository of a code task, bounded for a prompt.

A code task works on a git repository; its planner and executors see the repository's file
tree and the project's own instructions (`AGENTS.md`, plus `CLAUDE.md` when present, as Codex,
Claude Code and Cursor read them). Roles never run git: the engine reads the tree
(`git ls-tree -r --name-only BASE`) and the instruction files, and builds a `ProjectContext`
with `ProjectContext.build`, which bounds every part so a huge repository or a long
`AGENTS.md` cannot blow up a prompt.

`file_tree_text` summarizes a long tree: directories that do not fit are shown collapsed with
their file count, shallow levels first, so the planner sees the whole shape of the repository
rather than the first few hundred paths of one directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "INSTRUCTION_FILES",
    "ProjectContext",
    "clip_text",
    "file_tree_text",
    "instructions_text",
]

#: The project-instruction files read at the repository root, in the order they are shown.
INSTRUCTION_FILES: tuple[str, ...] = ("AGENTS.md", "CLAUDE.md")
#: Default bounds: a planner prompt stays well under a model's context with all parts full.
TREE_ENTRIES = 400
TREE_CHARS = 24_000
INSTRUCTIONS_CHARS = 16_000
#: A path longer than this is cut (generated names can be absurd); it is still one entry.
PATH_CHARS = 200


def clip_text(text: str, limit: int, *, what: str = "text") -> str:
    """`text` cut to at most about `limit` characters at a line break, with a note saying how
    much was left out; unchanged when it fits."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # Cut at a line break when there is one in the last quarter: half a line reads as noise.
    newline = cut.rfind("\n")
    if newline >= limit * 3 // 4:
        cut = cut[:newline]
    left = len(text) - len(cut)
    return f"{cut.rstrip()}\n[... {what} cut here: {left} more characters not shown]"


# --- the file tree ------------------------------------------------------------------------


@dataclass
class _Dir:
    path: str
    depth: int
    files: list[str]
    dirs: dict[str, _Dir]
    total: int = 0  # files anywhere below

    def entries(self) -> int:
        return len(self.files) + len(self.dirs)


def _tree(paths: Sequence[str]) -> _Dir:
    root = _Dir("", 0, [], {})
    for raw in dict.fromkeys(p.strip().strip("/") for p in paths):
        parts = PurePosixPath(raw).parts if raw else ()
        if not parts:
            continue
        node = root
        node.total += 1
        for part in parts[:-1]:
            child = node.dirs.get(part)
            if child is None:
                path = f"{node.path}/{part}" if node.path else part
                child = node.dirs[part] = _Dir(path, node.depth + 1, [], {})
            node = child
            node.total += 1
        node.files.append(raw)
    return root


def _expanded(root: _Dir, limit: int) -> set[str]:
    """The directories shown with their contents; the others are one collapsed line each.

    Breadth first (shallow before deep, then by path), a directory is opened when its entries
    still fit in `limit` lines; one that does not fit stays collapsed while smaller ones later
    in the order may still open.
    """
    opened = {root.path}
    lines = root.entries()
    level = sorted(root.dirs.values(), key=lambda d: d.path)
    while level:
        below: list[_Dir] = []
        for node in level:
            if lines - 1 + node.entries() <= limit:
                opened.add(node.path)
                lines += node.entries() - 1
                below.extend(node.dirs.values())
        level = sorted(below, key=lambda d: d.path)
    return opened


def _lines(node: _Dir, opened: set[str]) -> list[tuple[str, str]]:
    """(sort key, line) for everything shown under an opened directory."""
    out: list[tuple[str, str]] = []
    for path in node.files:
        out.append((path, _clip_path(path)))
    for child in node.dirs.values():
        if child.path in opened:
            out.extend(_lines(child, opened))
        else:
            noun = "file" if child.total == 1 else "files"
            out.append((child.path + "/", f"{_clip_path(child.path)}/ ({child.total} {noun})"))
    return out


def _clip_path(path: str) -> str:
    return path if len(path) <= PATH_CHARS else path[: PATH_CHARS - 1] + "…"


def file_tree_text(paths: Sequence[str], limit: int = TREE_ENTRIES) -> str:
    """The repository's files (as `git ls-tree -r --name-only` lists them) in at most
    `limit` lines plus one header line.

    Every path is shown when they fit. Otherwise directories are collapsed to one line,
    `src/vendor/ (812 files)`, deepest and largest first, so the top levels stay visible; if
    even the top level has more than `limit` entries, the rest are counted in a last line.
    Blank lines and repeats are ignored; the result is sorted by path.
    """
    limit = max(1, limit)
    root = _tree(paths)
    if root.total == 0:
        return "(the repository has no tracked files)"
    opened = _expanded(root, limit)
    lines = [line for _key, line in sorted(_lines(root, opened))]
    hidden = len(lines) - limit
    if hidden > 0:
        lines = [*lines[: limit - 1], f"... and {hidden + 1} more entries at the top level"]
    noun = "file" if root.total == 1 else "files"
    header = f"{root.total} tracked {noun}"
    if len(opened) < len(_all_dirs(root)) or hidden > 0:
        header += "; a line 'dir/ (N files)' is a directory shown collapsed"
    return header + "\n" + "\n".join(lines)


def _all_dirs(root: _Dir) -> list[str]:
    found = [root.path]
    todo = list(root.dirs.values())
    while todo:
        node = todo.pop()
        found.append(node.path)
        todo.extend(node.dirs.values())
    return found


# --- the project's instructions -----------------------------------------------------------


def instructions_text(files: Mapping[str, str], limit: int = INSTRUCTIONS_CHARS) -> str:
    """The instruction files' texts (name -> text; blank ones skipped), each under its name,
    in `INSTRUCTION_FILES` order then any others, bounded to about `limit` characters."""
    names = [n for n in INSTRUCTION_FILES if n in files]
    names += [n for n in files if n not in names]
    parts = [f"# {name}\n{files[name].strip()}" for name in names if files[name].strip()]
    return clip_text("\n\n".join(parts), limit, what="the project's instructions")


# --- the context --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectContext:
    """The repository of a code task as its prompts present it.

    `file_tree` and `instructions` are prompt text, already bounded (build them with
    `build`, or `file_tree_text` and `instructions_text`); the commands are the configured
    `[code]` commands as the executors' `run_command` tool offers them ("" when none).
    """

    file_tree: str
    instructions: str = ""
    test_command: str = ""
    lint_command: str = ""
    allow_shell: bool = False

    @classmethod
    def build(
        cls,
        paths: Sequence[str],
        instruction_files: Mapping[str, str] | None = None,
        *,
        test_command: str = "",
        lint_command: str = "",
        allow_shell: bool = False,
        tree_limit: int = TREE_ENTRIES,
        instructions_limit: int = INSTRUCTIONS_CHARS,
    ) -> ProjectContext:
        """From the tracked paths and the instruction files found (name -> text)."""
        return cls(
            file_tree=file_tree_text(paths, tree_limit),
            instructions=instructions_text(instruction_files or {}, instructions_limit),
            test_command=test_command.strip(),
            lint_command=lint_command.strip(),
            allow_shell=allow_shell,
        )

    def tree_for_prompt(self, limit: int = TREE_CHARS) -> str:
        """The file tree, bounded again in characters (a hand-built context may be long)."""
        return clip_text(self.file_tree.strip(), limit, what="the file tree")

    def instructions_for_prompt(self, limit: int = INSTRUCTIONS_CHARS) -> str:
        """The project's instructions, bounded again in characters; "" when there are none."""
        return clip_text(self.instructions.strip(), limit, what="the project's instructions")

    def commands(self) -> dict[str, str]:
        """The `run_command` names on offer and what each runs (shell: any command line)."""
        named = {"test": self.test_command, "lint": self.lint_command}
        offered = {name: line for name, line in named.items() if line}
        if self.allow_shell:
            offered["shell"] = "any command line you give (no network)"
        return offered
