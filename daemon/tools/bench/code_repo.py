"""The repository `tierd bench`'s code workload works on: generated, committed, tested.

A package `kit` with one real module (`kit/text.py`) and its tests, plus `filler` generated
modules under `kit/gen/` (distinct small files, so a worktree checks out a repository of a
realistic size: git's costs grow with the files it writes). The scenario `bench_code` adds
seven modules and their tests. The test command is pytest with the interpreter running the
bench (no plugins autoloaded: tierd's own environment has several, each costing time per run).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["GOAL", "NEW_FILES", "SCENARIO", "make_repo", "project_test_command"]

SCENARIO = "bench_code"
GOAL = (
    "Add to the kit package, tests first: URL slugs, roman numerals, word wrapping, summary "
    "statistics and human-readable byte sizes; then chapter anchors (on slugs and roman "
    "numerals) and a size report (on statistics and byte sizes)."
)
#: What the scenario's streams add (each stream's files; the bench checks the merge has them).
NEW_FILES = (
    *(f"tests/test_{m}.py" for m in ("slug", "roman", "wrap", "stats", "units", "index", "table")),
    *(f"kit/{m}.py" for m in ("slug", "roman", "wrap", "stats", "units", "index", "table")),
)

_FILES: dict[str, str] = {
    "README.md": "# kit\n\nSmall text and number helpers. Run the tests with "
    "`python -m pytest -q`.\n",
    "AGENTS.md": "Plain Python 3, no dependencies. Every module has a docstring; tests live in "
    "tests/ and run with `python -m pytest -q`. kit/gen/ is generated: never edit it.\n",
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    "pyproject.toml": '[project]\nname = "kit"\nversion = "0.1.0"\n\n'
    '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
    "kit/__init__.py": '"""Small text and number helpers."""\n',
    "kit/text.py": '''"""Text helpers."""


def title_case(text: str) -> str:
    """'the api guide' -> 'The Api Guide'."""
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def truncate(text: str, width: int) -> str:
    """At most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
''',
    "tests/test_text.py": """from kit.text import title_case, truncate


def test_title_case():
    assert title_case("the api guide") == "The Api Guide"


def test_truncate_marks_a_cut():
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
""",
}


def _filler(i: int) -> tuple[str, str]:
    """Generated module number `i`: a lookup table and its accessor, distinct per module."""
    values = ", ".join(str((i * 7919 + k * 104729) % 65521) for k in range(12))
    text = (
        f'"""Generated module {i} (do not edit): a lookup table and its accessor."""\n\n'
        f"TABLE = ({values})\n\n\n"
        f"def lookup_{i}(key: int) -> int:\n"
        f'    """The table entry for `key` (wrapping around)."""\n'
        "    return TABLE[key % len(TABLE)]\n"
    )
    return f"kit/gen/p{i // 100:03d}/m{i:05d}.py", text


def project_test_command() -> str:
    """The project's test command as tierd runs it (a shell line, in the sandbox)."""
    argv = shlex.join([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
    return f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {argv}"


def _git(repo: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    identity = ("-c", "user.name=tierd bench", "-c", "user.email=bench@tierd.invalid")
    switches = ("-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null")
    done = subprocess.run(
        ["git", *identity, *switches, "-C", str(repo), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")


def make_repo(root: Path, filler: int) -> Path:
    """Write the project with `filler` generated modules at `root`, committed on `main`;
    blocks (the bench calls it in a thread)."""
    files = dict(_FILES)
    files.update(_filler(i) for i in range(filler))
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", f"kit: text helpers and {filler} generated modules")
    return root
