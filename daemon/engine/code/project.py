"""What the planner and the coders are told about a code task's project, read from its base.

The file tree (`git ls-tree` of the base commit: tracked files only, so nothing gitignored)
bounded to `[code] max_tree_paths` entries, and the project's own instructions for agents,
`AGENTS.md` and `CLAUDE.md` at the repository root, as Codex, Claude Code and Cursor read
them. Read from the commit, never from the user's working tree.
"""

from __future__ import annotations

from pathlib import Path

from daemon.engine.code.git import git
from daemon.engine.code.settings import CodeSettings
from roles.project import ProjectContext, file_tree_text

__all__ = ["INSTRUCTION_FILES", "project_context"]

#: The files of project instructions, in the order they are given.
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
#: Most bytes of each instructions file passed on.
INSTRUCTIONS_BYTES = 20_000


async def _instructions(repo: Path, commit: str) -> str:
    parts = []
    for name in INSTRUCTION_FILES:
        found = await git(
            repo, "show", f"{commit}:{name}", check=False, max_output_bytes=INSTRUCTIONS_BYTES
        )
        if found.exit_code == 0 and found.out.strip():
            more = "\n[... the file goes on]" if found.truncated else ""
            parts.append(f"## {name}\n\n{found.out.strip()}{more}")
    return "\n\n".join(parts)


async def project_context(repo: Path, commit: str, settings: CodeSettings) -> ProjectContext:
    """The project as the base commit holds it, with the task's commands."""
    listed = await git(repo, "ls-tree", "-r", "--name-only", "-z", commit)
    paths = [p for p in listed.out.split("\0") if p]
    return ProjectContext(
        file_tree=file_tree_text(paths, settings.max_tree_paths),
        instructions=await _instructions(repo, commit),
        test_command=settings.test_command,
        lint_command=settings.lint_command,
        allow_shell=settings.allow_shell,
    )
