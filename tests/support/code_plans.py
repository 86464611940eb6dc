"""Pieces of the simulator's code scenarios: a scripted tool call, a code stream's spec."""

from __future__ import annotations

import sys
from typing import Any


def tool(tool_name: str, /, **args: Any) -> dict[str, Any]:
    """One scripted tool call of a code script (`code.streams.<id>`)."""
    return {"tool": tool_name, "args": args}


def code_stream(
    sid: str, kind: str, owns: list[str], deps: list[str] | None = None
) -> dict[str, Any]:
    """A plan stream of a code task: it owns the path globs `owns`."""
    return {
        "id": sid,
        "title": f"Stream {sid}",
        "job": f"Do {sid}",
        "output_definition": "the change, committed",
        "ownership": owns,
        "depends_on": deps or [],
        "kind": kind,
    }


def calc_conflict() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Streams a and b, whose ownership globs overlap where the plan validator cannot see it
    ("*.py" and "src/**"): both edit `a + b` in src/calc.py, so merging them conflicts.
    Their plan streams, and their scripts by stream id."""
    streams = [code_stream("a", "other", ["*.py"]), code_stream("b", "other", ["src/**"])]
    scripts = {
        "a": [
            tool("edit_file", path="src/calc.py", old="a + b", new="a + b  # from a"),
            tool("finish", summary="a"),
        ],
        "b": [
            tool("edit_file", path="src/calc.py", old="a + b", new="b + a  # from b"),
            tool("finish", summary="b"),
        ],
    }
    return streams, scripts


#: The smallest code change the tests script: `half()`, in src/feature.py.
HALF = "def half(x):\n    return x // 2\n"


#: A stream's script to kill in the middle of: it writes src/feature.py and runs a command,
#: then edits that file, runs another command and writes one more file. Each command appends
#: a line to src/count.txt in the worktree (a command may write nowhere else), so the branch
#: holds one line per run of a command.
COUNTING_CODER = [
    tool("write_file", path="src/feature.py", content=HALF),
    tool("run_command", name="shell", command="echo one >> src/count.txt"),
    tool("edit_file", path="src/feature.py", old="x // 2", new="x // 2  # halved"),
    tool("run_command", name="shell", command="echo two >> src/count.txt"),
    tool("write_file", path="src/more.py", content="MORE = 1\n"),
    tool("finish", summary="half() added"),
]


def adds_half(latency: dict[str, float], sid: str = "impl") -> dict[str, Any]:
    """A code task's scenario of one stream, `sid`, owning src/**: it writes `HALF` to
    src/feature.py and finishes."""
    return {
        "latency": latency,
        "plan": {"streams": [code_stream(sid, "other", ["src/**"])]},
        "code": {
            "streams": {
                sid: [
                    tool("write_file", path="src/feature.py", content=HALF),
                    tool("finish", summary="half() added"),
                ]
            }
        },
    }


#: pytest as tierd runs it in a test repository's sandbox: without the plugins of this venv
#: (xdist, playwright, schemathesis, ...), whose loading took about 30 s of a 2 s run there.
PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
