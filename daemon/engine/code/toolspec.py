"""The executor's tools as the model sees them: arguments, JSON schemas, and dispatch by name.

One place defines each tool's arguments (a pydantic model whose docstring is the tool's
description); `tool_schemas` turns them into the OpenAI function-calling format that litellm
takes as `tools=`, and `call_tool` validates a model's call (arguments as the JSON text the
model wrote) and runs the tool. A call the model got wrong (unknown tool, bad JSON, a missing
argument) becomes a failed `ToolResult` the model reads, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.engine.code import tools
from daemon.engine.code.tools import CommandName, ToolResult, Workspace

__all__ = ["TOOLS", "ToolSpec", "call_tool", "tool_schemas"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListFiles(_Args):
    """List the worktree's files (tracked and new; not those git ignores), optionally under a
    directory or filtered by a glob."""

    path: str = Field(".", description="A directory relative to the worktree root.")
    pattern: str = Field("", description="A glob filter, e.g. '*.py' or 'src/**/test_*.py'.")


class ReadFile(_Args):
    """Read a text file, with line numbers (which are not part of the file). Long files are
    shown in parts: call again with start_line for more."""

    path: str = Field(description="The file, relative to the worktree root.")
    start_line: int = Field(1, ge=1, description="The first line to show (1-based).")
    max_lines: int = Field(0, ge=0, description="How many lines at most (0: the tool's limit).")


class Search(_Args):
    """Search the worktree's files for a pattern (git grep); answers path:line: text."""

    pattern: str = Field(description="An extended regular expression, or text with fixed.")
    path: str = Field(".", description="Search only under this path.")
    fixed: bool = Field(False, description="Take the pattern as plain text.")
    ignore_case: bool = Field(False, description="Match regardless of case.")


class WriteFile(_Args):
    """Write a whole file, creating it (and its directories) if missing. Only files within
    this stream's ownership can be written."""

    path: str = Field(description="The file, relative to the worktree root.")
    content: str = Field(description="The file's complete new content.")


class EditFile(_Args):
    """Replace one exact piece of a file's text: `old` must occur exactly once (copy it from
    read_file without the line numbers; include surrounding lines to make it unique)."""

    path: str = Field(description="The file, relative to the worktree root.")
    old: str = Field(description="The exact text to replace.")
    new: str = Field(description="The text to put instead.")


class ApplyPatch(_Args):
    """Apply a unified diff (as `git diff` prints it, paths as a/... and b/...) to the
    worktree's files. Every file it touches must be within this stream's ownership."""

    patch: str = Field(description="The unified diff.")


class RunCommand(_Args):
    """Run a command in a sandbox in the worktree (no network, time limit) and see its exit
    code and output: 'test' runs the project's tests, 'lint' its linter, 'shell' a command."""

    name: CommandName = Field("test", description="Which command to run.")
    command: str = Field("", description="The shell command, for name 'shell' only.")


class Finish(_Args):
    """End your work: say what you changed, how you checked it, and anything left undone."""

    summary: str = Field(description="The summary of your work.")


@dataclass(frozen=True)
class ToolSpec:
    """A tool: its argument model and how to run it."""

    args: type[_Args]
    run: Callable[[Workspace, Any], Awaitable[ToolResult]]


TOOLS: dict[str, ToolSpec] = {
    "list_files": ToolSpec(ListFiles, lambda ws, a: tools.list_files(ws, a.path, a.pattern)),
    "read_file": ToolSpec(
        ReadFile, lambda ws, a: tools.read_file(ws, a.path, a.start_line, a.max_lines)
    ),
    "search": ToolSpec(
        Search, lambda ws, a: tools.search(ws, a.pattern, a.path, a.fixed, a.ignore_case)
    ),
    "write_file": ToolSpec(WriteFile, lambda ws, a: tools.write_file(ws, a.path, a.content)),
    "edit_file": ToolSpec(EditFile, lambda ws, a: tools.edit_file(ws, a.path, a.old, a.new)),
    "apply_patch": ToolSpec(ApplyPatch, lambda ws, a: tools.apply_patch(ws, a.patch)),
    "run_command": ToolSpec(RunCommand, lambda ws, a: tools.run_command(ws, a.name, a.command)),
    "finish": ToolSpec(Finish, lambda ws, a: tools.finish(ws, a.summary)),
}


def _untitled(node: Any, *, names: bool = False) -> Any:
    """The schema without pydantic's "title" keys (`names`: a map of property names)."""
    if isinstance(node, dict):
        return {
            k: _untitled(v, names=k == "properties" and not names)
            for k, v in node.items()
            if names or k != "title"
        }
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def _schema(name: str, spec: ToolSpec, ws: Workspace | None) -> dict[str, Any]:
    params = _untitled(spec.args.model_json_schema())
    description = " ".join(str(params.pop("description", "")).split())
    if name == "run_command" and ws is not None:
        params["properties"]["name"]["enum"] = list(ws.commands())
        if not ws.allow_shell:
            del params["properties"]["command"]
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": params},
    }


def tool_schemas(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """The tools in OpenAI function-calling format (litellm `tools=`).

    With a workspace, `run_command` offers only the commands configured there (and is left
    out when there are none).
    """
    return [
        _schema(name, spec, ws)
        for name, spec in TOOLS.items()
        if not (name == "run_command" and ws is not None and not ws.commands())
    ]


def _arguments(raw: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("the arguments must be a JSON object")
        return parsed
    return raw


async def call_tool(
    ws: Workspace, name: str, arguments: str | Mapping[str, Any] | None
) -> ToolResult:
    """Run the tool a model called; a malformed call answers with what was wrong."""
    spec = TOOLS.get(name)
    if spec is None:
        known = ", ".join(TOOLS)
        return ToolResult(tool=name, ok=False, output=f"unknown tool {name!r}; the tools: {known}")
    try:
        args = spec.args.model_validate(_arguments(arguments))
    except (ValueError, ValidationError) as bad:
        # ValidationError is a ValueError; json.JSONDecodeError too.
        detail = str(bad).replace("\n", "; ")
        return ToolResult(tool=name, ok=False, output=f"bad arguments for {name}: {detail}")
    return await spec.run(ws, args)
