"""`tests/mutation/run.py`: break the product on purpose and watch the right test fail.

Each case in `cases.toml` names one breakage of a README promise (an exact text replacement in
one file) and the tests that must notice it. For each case the harness copies the repository's
files (tracked and untracked-but-not-ignored, as `git ls-files -co --exclude-standard` lists
them; never `.venv` or `.git`) to a temporary directory, applies the breakage there, runs the
tests in that copy with the project's Python (`PYTHONPATH` = the copy, so the copy's `daemon`
and `roles` win over the editable install) and reports **caught** when they fail, **missed**
when they pass. A case whose anchor text is gone, or found more than once, stops the run before
anything starts: the cases must stay in step with the code.

    run.py --list            the cases
    run.py --check           every anchor matches exactly once and every test file exists
    run.py --ci              the cases CI runs (in_ci = true)
    run.py --case ID ...     one case (repeatable); no selection: every case
    run.py --baseline        first run each case's tests unbroken (a catch means nothing if
                             they fail anyway; CI runs the harness after the whole suite has
                             passed, which is its baseline)
    run.py --jobs N --keep   N cases at once (default 1: the tests start daemons and time
                             them); keep the copies and their pytest.log

Exit status: 0 every case run was caught; 1 a case was missed or its run went wrong; 2 a case
could not be applied (bad entry, anchor gone or ambiguous, unknown id), nothing was run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES_FILE = Path(__file__).with_name("cases.toml")
#: A case's wall-clock bound unless it sets `timeout_s` (the chaos test alone may take minutes).
DEFAULT_TIMEOUT_S = 1200.0
#: Never copied: the venv and git's store are large and not the product; caches are rebuilt.
SKIP_DIRS = frozenset(
    {".venv", ".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
REQUIRED = {"id", "promise", "file", "find", "replace", "tests", "in_ci"}
OPTIONAL = {"timeout_s", "env"}
#: What pytest's exit statuses other than 0 (passed) and 1 (failed) mean: none is a catch.
PYTEST_EXIT = {
    2: "interrupted or a collection error",
    3: "internal error",
    4: "usage error (a test id that does not exist?)",
    5: "no tests collected",
}
_SUMMARY = re.compile(
    r"(\d+ (?:failed|passed|errors?|skipped|deselected|xfailed)[^\n]*?) in [\d.]+s"
)
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


class CaseError(Exception):
    """A case that cannot be run as written: a bad entry, or an anchor that is gone."""


@dataclass(frozen=True)
class Case:
    id: str
    promise: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    in_ci: bool
    timeout_s: float = DEFAULT_TIMEOUT_S
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    case: Case
    #: "caught", "missed" or "error".
    verdict: str
    seconds: float
    detail: str
    #: The end of the tests' output, shown when the verdict is not "caught".
    tail: str = ""


# --- cases -------------------------------------------------------------------------------------


def _case_from(entry: dict[str, object], where: str) -> Case:
    missing, unknown = REQUIRED - set(entry), set(entry) - REQUIRED - OPTIONAL
    if missing or unknown:
        raise CaseError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    tests = entry["tests"]
    if not (isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests)):
        raise CaseError(f"{where}: tests must be a non-empty list of pytest node ids")
    texts = {k: entry[k] for k in ("id", "promise", "file", "find", "replace")}
    if not all(isinstance(v, str) and v for k, v in texts.items() if k != "replace"):
        raise CaseError(f"{where}: id, promise, file and find must be non-empty strings")
    if not isinstance(entry["replace"], str) or entry["replace"] == entry["find"]:
        raise CaseError(f"{where}: replace must be a string other than find")
    if not isinstance(entry["in_ci"], bool):
        raise CaseError(f"{where}: in_ci must be true or false")
    env = entry.get("env", {})
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise CaseError(f"{where}: env must be a table of strings")
    timeout = entry.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise CaseError(f"{where}: timeout_s must be a positive number")
    return Case(
        id=str(entry["id"]),
        promise=str(entry["promise"]),
        file=str(entry["file"]),
        find=str(entry["find"]),
        replace=str(entry["replace"]),
        tests=tuple(tests),
        in_ci=bool(entry["in_ci"]),
        timeout_s=float(timeout),
        env=dict(env),
    )


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """The `[[case]]` entries of `path`, checked for shape; ids are unique."""
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = doc.get("case")
    if not isinstance(entries, list) or not entries:
        raise CaseError(f"{path}: no [[case]] entries")
    cases = [_case_from(e, f"{path.name}, case {i + 1}") for i, e in enumerate(entries)]
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise CaseError(f"{path.name}: case id {c.id!r} is used twice")
        seen.add(c.id)
    return cases


def select(cases: Sequence[Case], ids: Sequence[str], ci: bool) -> list[Case]:
    """The cases named by `ids` (in that order), else the in_ci ones with `ci`, else all."""
    if ids:
        by_id = {c.id: c for c in cases}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise CaseError(f"unknown case {unknown}; known: {sorted(by_id)}")
        return [by_id[i] for i in ids]
    return [c for c in cases if c.in_ci] if ci else list(cases)


def _broken_text(case: Case, tree: Path) -> str:
    """The case's file in `tree` with the breakage applied; CaseError unless the anchor is
    found exactly once."""
    path = tree / case.file
    if not path.is_file():
        raise CaseError(f"case {case.id}: {case.file} does not exist")
    text = path.read_text(encoding="utf-8")
    found = text.count(case.find)
    if found != 1:
        first = case.find.strip().splitlines()[0]
        raise CaseError(
            f"case {case.id}: the anchor is found {found} times in {case.file} (it must be "
            f"exactly once; update cases.toml to today's code): {first!r}"
        )
    return text.replace(case.find, case.replace)


def check(case: Case, tree: Path) -> None:
    """The breakage applies to `tree` and every test file the case names exists there."""
    _broken_text(case, tree)
    for node in case.tests:
        if not (tree / node.split("::")[0]).exists():
            raise CaseError(f"case {case.id}: test {node} names a file that does not exist")


def apply(case: Case, tree: Path) -> None:
    """Write the breakage into `tree` (a copy, never the repository itself)."""
    (tree / case.file).write_text(_broken_text(case, tree), encoding="utf-8")


# --- the copy ----------------------------------------------------------------------------------


def repo_files(root: Path) -> list[str]:
    """The repository's files, relative to `root`: git's tracked and untracked-but-not-ignored
    ones (a file deleted in the working tree is left out); outside git, every file under root.
    Nothing under SKIP_DIRS."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "surrogateescape")
        names: Iterable[str] = listed.split("\0")
    except (OSError, subprocess.CalledProcessError):
        names = _walk(root)
    return sorted(
        n for n in names if n and not SKIP_DIRS.intersection(Path(n).parts) and (root / n).is_file()
    )


def _walk(root: Path) -> Iterable[str]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for f in files:
            yield str(Path(folder, f).relative_to(root))


def copy_tree(root: Path, dest: Path) -> None:
    """Copy the repository's files (modes and times kept) into `dest`."""
    for name in repo_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target, follow_symlinks=False)


# --- running -----------------------------------------------------------------------------------


def default_python(root: Path) -> str:
    venv = root / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def pytest_command(python: str, tests: Sequence[str]) -> list[str]:
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", "-x", *tests]


def run_env(tree: Path, case: Case) -> dict[str, str]:
    """The environment of the tests: the copy first on the path, no trace of an outer pytest."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    env.update(case.env)
    return env


def run_tests(python: str, tree: Path, case: Case) -> tuple[int | None, str]:
    """pytest on the case's tests in `tree`: (exit status or None on time-out, output)."""
    log = tree.parent / "pytest.log"
    with log.open("wb") as out:
        # A session of its own: on time-out the whole group (pytest and the daemons its tests
        # started) is ended, and nothing else.
        proc = subprocess.Popen(
            pytest_command(python, case.tests),
            cwd=tree,
            env=run_env(tree, case),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=case.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    return rc, log.read_text(encoding="utf-8", errors="replace")


def judge(rc: int | None, output: str, timeout_s: float) -> tuple[str, str]:
    """(verdict, detail) from pytest's exit status and output."""
    summaries = _SUMMARY.findall(output)
    summary = summaries[-1] if summaries else "no summary"
    if rc == 1:
        failed = _FAILED.findall(output)
        return "caught", f"by {failed[0] if failed else '?'} ({summary})"
    if rc == 0:
        return "missed", f"the tests passed ({summary})"
    if rc is None:
        return "error", f"no verdict within {timeout_s:.0f} s"
    return "error", f"pytest exit {rc}: {PYTEST_EXIT.get(rc, 'unknown')} ({summary})"


def _tail(output: str, lines: int = 30) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])


def run_case(
    case: Case, *, root: Path, python: str, keep: bool = False, baseline: bool = False
) -> Outcome:
    """Copy, (check the tests pass unbroken,) break, run the tests, judge."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"tierd-mutation-{case.id}-"))
    tree = work / "repo"
    try:
        copy_tree(root, tree)
        if baseline:
            rc, output = run_tests(python, tree, case)
            if rc != 0:
                _, detail = judge(rc, output, case.timeout_s)
                return Outcome(
                    case,
                    "error",
                    time.monotonic() - started,
                    f"the tests fail without the breakage ({detail.removeprefix('by ')})",
                    _tail(output),
                )
        apply(case, tree)
        rc, output = run_tests(python, tree, case)
        verdict, detail = judge(rc, output, case.timeout_s)
        if keep:
            detail += f"; copy kept in {work}"
        tail = "" if verdict == "caught" else _tail(output)
        return Outcome(case, verdict, time.monotonic() - started, detail, tail)
    except CaseError as exc:
        return Outcome(case, "error", time.monotonic() - started, str(exc))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def run_all(
    cases: Sequence[Case],
    jobs: int,
    run: Callable[[Case], Outcome],
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Every case (`jobs` at a time), reporting each as it ends; outcomes in case order."""

    def one(case: Case) -> Outcome:
        # A line as each starts: a CI log shows what a long case is doing.
        print(f"[ start  ] {case.id}: {case.file} broken, running {' '.join(case.tests)}")
        sys.stdout.flush()
        outcome = run(case)
        report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


# --- output ------------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def print_outcome(outcome: Outcome) -> None:
    c = outcome.case
    print(f"[{outcome.seconds:6.0f} s] {c.id}: {outcome.verdict.upper()} {outcome.detail}")
    if outcome.tail:
        print("    " + outcome.tail.replace("\n", "\n    "))
    sys.stdout.flush()


def print_summary(outcomes: Sequence[Outcome]) -> None:
    rows = [["case", "promise", "result", "time", "detail"]]
    rows += [
        [o.case.id, o.case.promise, o.verdict, f"{o.seconds:.0f} s", o.detail] for o in outcomes
    ]
    print()
    print(table(rows))
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("caught", "missed", "error")}
    print(
        f"\n{counts['caught']} of {len(outcomes)} caught, {counts['missed']} missed, "
        f"{counts['error']} could not be judged"
    )


def print_list(cases: Sequence[Case]) -> None:
    rows = [["case", "promise", "ci", "file", "tests"]]
    rows += [
        [c.id, c.promise, "yes" if c.in_ci else "no", c.file, " ".join(c.tests)] for c in cases
    ]
    print(table(rows))


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tests/mutation/run.py",
        description="Break the product on purpose, in a copy, and check the right test fails.",
    )
    p.add_argument("--ci", action="store_true", help="only the cases with in_ci = true")
    p.add_argument("--case", action="append", default=[], metavar="ID", help="run this case")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--check", action="store_true", help="check the anchors only, run nothing")
    p.add_argument("--baseline", action="store_true", help="run the tests unbroken first")
    p.add_argument("--jobs", type=int, default=1, help="cases at once (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies")
    p.add_argument("--python", help="the interpreter for the tests (default: .venv's)")
    p.add_argument("--cases", type=Path, default=CASES_FILE, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        cases = select(load_cases(args.cases), args.case, args.ci)
        if args.list:
            print_list(cases)
            return 0
        for case in cases:  # all anchors first: a stale case stops the run before it starts
            check(case, root)
    except CaseError as exc:
        print(f"mutation harness: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{len(cases)} cases apply to {root}")
        return 0
    print(f"{len(cases)} cases, {args.jobs} at a time, on copies of {root}")
    run = partial(
        run_case,
        root=root,
        python=args.python or default_python(root),
        keep=args.keep,
        baseline=args.baseline,
    )
    outcomes = run_all(cases, args.jobs, run, print_outcome)
    print_summary(outcomes)
    return 0 if all(o.verdict == "caught" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
