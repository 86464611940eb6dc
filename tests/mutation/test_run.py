"""The mutation harness itself: its cases apply to today's code, a stale anchor stops it, and
on a toy repository a breakage the test notices is caught and one it does not is missed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .run import ROOT, CaseError, check, load_cases, main, repo_files

CI_CASES = {
    "durability-answer-memo",
    "rpc-internal-error",
    "fault-deadline",
    "leak-task-get",
    "code-tool-memo",
    "shared-store-takeover",
}


def test_every_case_applies_to_todays_code() -> None:
    cases = load_cases()
    for case in cases:
        check(case, ROOT)  # the anchor is there exactly once, the test files exist
    assert {c.id for c in cases if c.in_ci} == CI_CASES


def test_the_copy_is_the_repository_without_venv_or_git() -> None:
    files = repo_files(ROOT)
    assert "tests/mutation/run.py" in files and "daemon/__init__.py" in files
    assert not [f for f in files if f.startswith((".venv/", ".git/")) or "__pycache__" in f]


def toy(tmp_path: Path, cases: str) -> tuple[Path, Path]:
    """A repository of one function and its test, outside git, and a cases file for it."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b  # sum\n")
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (repo / ".venv").mkdir()  # never copied (and not the interpreter: it has none)
    path = tmp_path / "cases.toml"
    path.write_text(cases)
    return repo, path


def case(id_: str, find: str, replace: str, test: str = "tests/test_calc.py") -> str:
    # Without the venv's other plugins (schemathesis, hypothesis...) pytest starts in a second
    # rather than ten on a busy machine; xdist stays, for the harness's -n0.
    return (
        f"[[case]]\nid = '{id_}'\npromise = 'sums'\nfile = 'calc.py'\nfind = '{find}'\n"
        f"replace = '{replace}'\ntests = ['{test}']\nin_ci = true\n"
        "env = { PYTEST_DISABLE_PLUGIN_AUTOLOAD = '1', PYTEST_ADDOPTS = '-p xdist.plugin' }\n\n"
    )


@pytest.mark.parametrize(
    ("find", "found"), [("return a * b", "0 times"), ("a", "3 times")], ids=["gone", "ambiguous"]
)
def test_an_anchor_gone_or_ambiguous_stops_the_run_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], find: str, found: str
) -> None:
    repo, cases = toy(tmp_path, case("fine", "a + b", "a - b") + case("stale", find, "x"))
    assert main(["--cases", str(cases), "--root", str(repo)]) == 2
    err = capsys.readouterr()
    assert f"case stale: the anchor is found {found} in calc.py" in err.err
    assert "caught" not in err.out  # nothing ran, not even the good case


def test_a_bad_entry_or_an_unknown_id_is_refused(tmp_path: Path) -> None:
    repo, cases = toy(tmp_path, case("same", "a + b", "a + b"))
    with pytest.raises(CaseError, match="replace must be a string other than find"):
        load_cases(cases)
    cases.write_text(case("fine", "a + b", "a - b").replace("in_ci = true\n", ""))
    with pytest.raises(CaseError, match=r"missing \['in_ci'\]"):
        load_cases(cases)
    cases.write_text(case("fine", "a + b", "a - b"))
    assert main(["--cases", str(cases), "--root", str(repo), "--case", "nope"]) == 2


def test_caught_missed_and_a_broken_test_id_are_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, cases = toy(
        tmp_path,
        case("wrong-sum", "a + b", "a - b")
        + case("harmless", "# sum", "# total")
        + case("no-such-test", "a + b", "b + a", test="tests/test_calc.py::test_gone"),
    )
    assert main(["--cases", str(cases), "--root", str(repo)]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines() if "  sums  " in line}
    assert rows == {"wrong-sum": "caught", "harmless": "missed", "no-such-test": "error"}
    assert "by tests/test_calc.py::test_add" in out
    assert "1 of 3 caught, 1 missed, 1 could not be judged" in out
    # The repository itself was never touched.
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b  # sum\n"
