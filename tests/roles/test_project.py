"""Tests for what the roles are told about a code task's repository: the bounded file tree,
the project's instructions, and the ProjectContext built from them."""

from __future__ import annotations

import dataclasses

import pytest

from roles.project import ProjectContext, clip_text, file_tree_text, instructions_text


def body(tree: str) -> list[str]:
    """The tree's lines without the header line."""
    return tree.splitlines()[1:]


def test_a_small_tree_is_shown_whole_and_sorted() -> None:
    tree = file_tree_text(["src/b.py", "README.md", "src/a.py", "", "src/a.py", "docs/x/y.md"])
    assert tree.splitlines()[0] == "4 tracked files"
    assert body(tree) == ["README.md", "docs/x/y.md", "src/a.py", "src/b.py"]
    assert "collapsed" not in tree


@pytest.mark.parametrize("limit", [1, 5, 12, 40, 400])
def test_a_long_tree_never_exceeds_its_limit(limit: int) -> None:
    paths = [f"vendor/lib{d}/f{i}.js" for d in range(30) for i in range(40)]
    paths += [f"src/m{i}.py" for i in range(8)] + ["README.md", "tests/test_m.py"]
    tree = file_tree_text(paths, limit)
    assert len(body(tree)) <= limit
    assert tree.splitlines()[0].startswith("1210 tracked files")


def test_collapsed_directories_show_their_file_counts_and_the_top_stays_visible() -> None:
    paths = [f"vendor/lib/x{i}.js" for i in range(300)] + [f"src/m{i}.py" for i in range(5)]
    paths += ["README.md", "tests/test_a.py", "tests/unit/test_b.py"]
    tree = file_tree_text(paths, 20)
    lines = body(tree)
    # The big directory is one line with its count; every small part is shown in full.
    assert "vendor/lib/ (300 files)" in lines
    for path in ("README.md", "src/m0.py", "src/m4.py", "tests/test_a.py", "tests/unit/test_b.py"):
        assert path in lines, path
    assert not any(line.startswith("vendor/lib/x") for line in lines)
    assert "is a directory shown collapsed" in tree.splitlines()[0]


def test_a_directory_that_does_not_fit_stays_collapsed_while_a_smaller_one_opens() -> None:
    paths = [f"a/big{i}" for i in range(50)] + ["b/one", "b/two"]
    lines = body(file_tree_text(paths, 5))
    assert lines == ["a/ (50 files)", "b/one", "b/two"]


def test_a_too_wide_top_level_is_cut_with_a_count() -> None:
    lines = body(file_tree_text([f"f{i:02d}" for i in range(10)], 4))
    assert lines == ["f00", "f01", "f02", "... and 7 more entries at the top level"]


def test_an_empty_tree_says_so() -> None:
    assert file_tree_text([]) == "(the repository has no tracked files)"
    assert file_tree_text(["", "  "]) == "(the repository has no tracked files)"


def test_an_absurdly_long_path_is_cut() -> None:
    lines = body(file_tree_text(["d/" + "x" * 1000]))
    assert len(lines[0]) == 200 and lines[0].endswith("…")


def test_instructions_come_in_order_under_their_names_and_are_bounded() -> None:
    text = instructions_text({"CLAUDE.md": "Claude rules.", "AGENTS.md": "Agent rules.\n"})
    assert text == "# AGENTS.md\nAgent rules.\n\n# CLAUDE.md\nClaude rules."
    assert instructions_text({"AGENTS.md": "  \n"}) == ""
    long = instructions_text({"AGENTS.md": "line of rules\n" * 5000}, limit=1000)
    assert len(long) < 1100
    assert long.endswith("more characters not shown]")
    assert "the project's instructions cut here" in long


def test_clip_text_keeps_short_text_and_cuts_long_text_at_a_line() -> None:
    assert clip_text("short", 10) == "short"
    cut = clip_text("aaaa\nbbbb\ncccc\ndddd", 12, what="the tree")
    assert cut.startswith("aaaa\nbbbb\n") and "cccc" not in cut
    assert cut.endswith("[... the tree cut here: 10 more characters not shown]")


def test_project_context_builds_bounded_parts_and_is_frozen() -> None:
    context = ProjectContext.build(
        [f"src/f{i}.py" for i in range(1000)],
        {"AGENTS.md": "x" * 50_000},
        test_command="  python -m pytest -q ",
        tree_limit=10,
        instructions_limit=2_000,
    )
    assert len(body(context.file_tree)) <= 10
    assert len(context.instructions) < 2_100
    assert context.test_command == "python -m pytest -q"
    assert context.commands() == {"test": "python -m pytest -q"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.test_command = "rm -rf /"  # type: ignore[misc]


def test_a_hand_built_context_is_bounded_again_when_rendered() -> None:
    context = ProjectContext(file_tree="p\n" * 50_000, instructions="i" * 50_000)
    assert len(context.tree_for_prompt(1_000)) < 1_100
    assert len(context.instructions_for_prompt(1_000)) < 1_100


def test_commands_offered_follow_the_configuration() -> None:
    none = ProjectContext(file_tree="t")
    assert none.commands() == {}
    full = ProjectContext(
        file_tree="t", test_command="pytest", lint_command="ruff check", allow_shell=True
    )
    assert list(full.commands()) == ["test", "lint", "shell"]
    assert full.commands()["lint"] == "ruff check"
