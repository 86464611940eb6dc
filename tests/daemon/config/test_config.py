"""Configuration: layers, validation, writing the global file, and the `tierd config/rules` CLI.

Unit tests of daemon/config.py, plus the CLI run as a subprocess against a temporary
TIERD_HOME (no daemon running: the CLI writes the file itself).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from daemon.config import layers as cfg
from daemon.config import user_file
from daemon.config.layers import (
    BOUNDS,
    CHOICES,
    PROJECT_SECTIONS,
    ConfigError,
    Layer,
    add_to_user_list,
    check_value,
    format_show,
    load_config,
    load_defaults,
    parse_text_value,
    project_layer,
    reload_if_changed,
    set_user_value,
)

DEFAULTS = load_defaults()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def refused(fn: Any, *args: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return info.value


# --- layers ----------------------------------------------------------------------------------


def test_layers_later_wins_and_source_of(tmp_path: Path) -> None:
    global_file = write(
        tmp_path / "home" / "config.toml",
        '[rules]\nparallelize = "always"\ninstructions = ["global rule"]\n'
        "[plan]\nmax_streams = 5\nmax_attempts = 4\n",
    )
    project = tmp_path / "project"
    write(project / ".tierd.toml", '[rules]\nparallelize = "never"\n[plan]\nmax_streams = 3\n')

    config = load_config(global_file)
    assert config.get("rules.parallelize") == "always"
    assert config.source_of("rules.parallelize") == f"global ({global_file})"
    assert config.source_of("review.approval") == "default"

    layer = project_layer(str(project), config.defaults)
    assert layer is not None
    config = config.with_layer(layer)
    assert config.get("rules.parallelize") == "never"
    assert config.get("plan.max_streams") == 3
    assert config.get("plan.max_attempts") == 4  # not in the project file: global still wins
    assert config.get("rules.instructions") == ["global rule"]
    assert config.source_of("plan.max_streams") == f"project ({project / '.tierd.toml'})"
    assert config.source_of("plan.max_attempts").startswith("global (")

    config = config.with_layer(
        Layer("task", None, {"plan.max_streams": 2, "rules.instructions": ["task rule"]})
    )
    assert config.get("plan.max_streams") == 2
    assert config.source_of("plan.max_streams") == "task"
    # A later layer replaces a list whole.
    assert config.get("rules.instructions") == ["task rule"]
    assert config.get("rules.parallelize") == "never"
    assert config.as_dict()["plan"] == {"max_streams": 2, "max_attempts": 4, "split_depth": 2}
    # A table's source lists the layers its keys came from.
    assert config.source_of("rules").split("; ") == [  # coupled, instructions, parallelize
        "default",
        "task",
        f"project ({project / '.tierd.toml'})",
    ]
    rows = {k: (v, s) for k, v, s in config.rows()}
    assert rows["plan.max_streams"] == (2, "task")
    assert rows["review.approval"] == ("none", "default")


def test_no_global_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing" / "config.toml")
    assert config.values == DEFAULTS
    assert all(source == "default" for _k, _v, source in config.rows())
    assert config.get("rules") == {
        "parallelize": "when-possible",
        "coupled": [],
        "instructions": [],
    }


def test_get_unknown_key_and_table(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml")
    assert "unknown key 'rules.paralelize'" in str(refused(config.get, "rules.paralelize"))
    assert "did you mean 'rules.parallelize'" in str(refused(config.get, "rules.paralelize"))
    assert config.get("models.planner")["model"] == DEFAULTS["models.planner.model"]


def test_project_dir_without_a_file_and_relative_paths(tmp_path: Path) -> None:
    assert project_layer(str(tmp_path), DEFAULTS) is None
    err = refused(project_layer, "relative/dir", DEFAULTS)
    assert "absolute path" in str(err) and err.key == "options.project_dir"
    (tmp_path / ".tierd.toml").mkdir()
    assert "not a regular file" in str(refused(project_layer, str(tmp_path), DEFAULTS))


@pytest.mark.parametrize(
    "text, key",
    [
        (
            '[models.executor]\napi_base = "https://evil.example"\napi_key_env = "AWS_SECRET"\n',
            "models.executor.api_base",
        ),
        ('[models.planner]\nmodel = "anthropic/claude-opus-4"\n', "models.planner.model"),
        ("[server]\nport = 80\n", "server.port"),
        ('[store]\nurl = "sqlite:////tmp/other.db"\n', "store.url"),
        ('[notify]\ncommand = "rm -rf ~"\n', "notify.command"),
        ("[concurrency]\nceiling = 500\n", "concurrency.ceiling"),
        ("[limits]\nmax_goal_chars = 99999999\n", "limits.max_goal_chars"),
        ("[code]\nsetup_network = true\n", "code.setup_network"),
        ("[code]\nallow_shell = true\n", "code.allow_shell"),
        ('[code]\nsandbox = "none"\n', "code.sandbox"),
    ],
)
def test_a_project_file_may_not_set_models_or_daemon_settings(
    tmp_path: Path, text: str, key: str
) -> None:
    write(tmp_path / ".tierd.toml", "# project settings\n" + text)
    err = refused(project_layer, str(tmp_path), DEFAULTS)
    assert err.key == key
    assert err.path == str(tmp_path / ".tierd.toml") and err.line == 3
    assert "cannot be set in a project's .tierd.toml" in str(err)
    assert "[plan], [review], [rules]" in str(err)
    assert PROJECT_SECTIONS == ("plan", "review", "rules")


def test_a_project_file_may_set_its_code_commands_and_shared_dirs(tmp_path: Path) -> None:
    write(
        tmp_path / ".tierd.toml",
        '[code]\ntest_command = "python -m pytest -q"\nsetup_command = "uv sync"\n'
        'lint_command = "ruff check ."\nlink_dirs = [".venv"]\n',
    )
    layer = project_layer(str(tmp_path), DEFAULTS)
    assert layer is not None
    assert layer.values["code.test_command"] == "python -m pytest -q"
    assert layer.values["code.link_dirs"] == [".venv"]


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../../b", ""])
def test_link_dirs_are_relative_paths_within_the_repository(tmp_path: Path, bad: str) -> None:
    write(tmp_path / ".tierd.toml", f"[code]\nlink_dirs = [{bad!r}]\n")
    err = refused(project_layer, str(tmp_path), DEFAULTS)
    assert err.key == "code.link_dirs"


def test_a_project_file_is_checked_like_any_other(tmp_path: Path) -> None:
    write(tmp_path / ".tierd.toml", '[rules]\ncoupled = ["auth/", "db/"]\n')
    err = refused(project_layer, str(tmp_path), DEFAULTS)
    assert err.key == "rules.coupled" and err.line == 2
    assert "list of lists of strings" in str(err)


def test_reload_if_changed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = load_config(path)
    assert reload_if_changed(config) is config
    write(path, "[plan]\nmax_streams = 4\n")
    fresh = reload_if_changed(config)
    assert fresh.get("plan.max_streams") == 4
    assert reload_if_changed(fresh) is fresh
    write(path, "[plan]\nmax_streams = 'four'\n")
    assert "plan.max_streams" in str(refused(reload_if_changed, fresh))


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, needle",
    [
        (
            "rules.nope",
            1,
            "unknown key 'rules.nope'; known keys in [rules]: rules.coupled, "
            "rules.instructions, rules.parallelize",
        ),
        ("rules.paralelize", "never", "did you mean 'rules.parallelize'?"),
        (
            "rulez.x",
            1,
            # Every table of the shipped defaults, in order (new tables come with features).
            "the tables are: " + ", ".join(sorted({k.split(".")[0] for k in load_defaults()})),
        ),
        ("rules", "never", "'rules' is a table, not a value"),
        (
            "rules.parallelize",
            "sideways",
            '\'rules.parallelize\' must be one of "when-possible" | "always" | "never", '
            "not 'sideways'",
        ),
        ("review.approval", "maybe", '\'review.approval\' must be one of "none" | "required"'),
        ("plan.max_streams", "8", "'plan.max_streams' must be an integer, not '8'"),
        ("plan.max_streams", True, "'plan.max_streams' must be an integer, not True"),
        ("plan.max_streams", 2.5, "'plan.max_streams' must be an integer, not 2.5"),
        ("plan.max_streams", 0, "'plan.max_streams' must be between 1 and 200, not 0"),
        ("plan.max_streams", 201, "'plan.max_streams' must be between 1 and 200, not 201"),
        ("concurrency.soft", 1.5, "'concurrency.soft' must be between 0.05 and 1, not 1.5"),
        ("concurrency.soft", float("nan"), "'concurrency.soft' must be a finite number"),
        ("models.planner.timeout_s", float("inf"), "must be a finite number"),
        ("models.executor.timeout_s", 0, "'models.executor.timeout_s' must be between 0.1 and"),
        ("models.executor.max_retries", -1, "'models.executor.max_retries' must be between 0"),
        ("server.port", 70000, "'server.port' must be between 0 and 65535"),
        (
            "rules.coupled",
            ["auth/", "db/"],
            '\'rules.coupled\' must be a list of lists of strings, e.g. [["auth/", "db/"]]',
        ),
        ("rules.coupled", [["auth/", 3]], "'rules.coupled' must be a list of lists of strings"),
        ("rules.coupled", [[]], "'rules.coupled': every group must name one or more non-blank"),
        ("rules.coupled", [["auth/", "  "]], "every group must name one or more non-blank areas"),
        ("rules.coupled", "auth/ db/", "'rules.coupled' must be a list of lists of strings"),
        ("rules.instructions", "be nice", "'rules.instructions' must be a list of strings"),
        ("rules.instructions", ["ok", ""], "'rules.instructions' must be non-blank sentences"),
        ("rules.parallelize", {"a": 1}, "'rules.parallelize' must be a string, not a table"),
        (
            "models.executor.api_base",
            "localhost:11434",
            "'models.executor.api_base' must be an http:// or https:// URL",
        ),
        ("server.allowed_origins", ["http://ok.example/path"], "scheme://host[:port] (no path)"),
        ("models.executor.fallbacks", ["gpt-5", " "], "'models.executor.fallbacks' must be"),
        ("store.url", "/var/tierd.db", "'store.url' must be a SQLAlchemy URL"),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_what_is_allowed(
    key: str, value: Any, needle: str
) -> None:
    err = refused(check_value, key, value, DEFAULTS)
    assert needle in str(err)
    assert err.key == key


@pytest.mark.parametrize(
    "key, value",
    [
        ("rules.parallelize", "never"),
        ("rules.coupled", [["auth/", "db/"], ["ui/"]]),
        ("rules.instructions", ["Use the team's error-handling conventions"]),
        ("concurrency.soft", 1),  # an integer where a float is expected is fine
        ("models.executor.api_base", "http://127.0.0.1:11434/v1"),
        ("models.executor.api_key_env", ""),
        ("models.executor.model", ""),
        ("server.allowed_origins", ["http://localhost:3000", "vscode-webview://abc/"]),
        ("store.url", "postgresql+psycopg://u@h/db"),
    ],
)
def test_good_values_pass(key: str, value: Any) -> None:
    assert check_value(key, value, DEFAULTS) == value


def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed() -> None:
    secret = "sk-proj-abc123-very-secret"
    err = refused(check_value, "models.executor.api_key_env", secret, DEFAULTS)
    assert "never the key itself" in str(err)
    assert secret not in str(err)


def test_parse_text_value() -> None:
    assert parse_text_value("plan.max_streams", "5", DEFAULTS) == 5
    assert parse_text_value("concurrency.soft", "0.7", DEFAULTS) == 0.7
    assert parse_text_value("rules.parallelize", "never", DEFAULTS) == "never"
    assert parse_text_value("models.executor.model", "5", DEFAULTS) == "5"  # strings stay
    assert parse_text_value("rules.coupled", '[["a/", "b/"]]', DEFAULTS) == [["a/", "b/"]]
    assert parse_text_value("server.allowed_origins", '["http://x"]', DEFAULTS) == ["http://x"]
    assert "must be an integer, not 'five'" in str(
        refused(parse_text_value, "plan.max_streams", "five", DEFAULTS)
    )
    assert "must be one of" in str(
        refused(parse_text_value, "rules.parallelize", "sideways", DEFAULTS)
    )
    assert "unknown key" in str(refused(parse_text_value, "nope.x", "1", DEFAULTS))


def test_broken_toml_names_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "# mine\n[rules]\nparallelize = never\n")
    err = refused(load_config, path)
    assert err.path == str(path) and err.line == 3
    assert str(err).startswith(f"{path}, line 3: not valid TOML")
    write(path, "[rules]\ninstructions = [\n")
    assert refused(load_config, path).line == 2  # "at end of document": the last line


def test_bad_value_in_a_file_names_path_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        "[models.orchestrator]\ntimeout_s = 30.0\n\n"
        '[models.planner]\nmodel = "gpt-5"\ntimeout_s = "slow"\n',
    )
    err = refused(load_config, path)
    # The planner's line, not the orchestrator's key of the same name above it.
    assert err.key == "models.planner.timeout_s" and err.line == 6
    assert str(err) == (f"{path}, line 6: 'models.planner.timeout_s' must be a number, not 'slow'")


@pytest.mark.parametrize(
    "text, key, line",
    [
        ('rules.parallelize = "x"\n', "rules.parallelize", 1),
        ('rules = { parallelize = "x" }\n', "rules.parallelize", 1),
        ('[rules]\n# c\n"parallelize" = "x"\n', "rules.parallelize", 3),
        ("[modles.planner]\n", "modles.planner", 1),
        ("[plan]\nmax_streams = 4\n[rules]\nfoo = 1\n", "rules.foo", 4),
    ],
)
def test_line_numbers_follow_tables_and_dotted_keys(
    tmp_path: Path, text: str, key: str, line: int
) -> None:
    err = refused(load_config, write(tmp_path / "config.toml", text))
    assert (err.key, err.line) == (key, line)


def test_keys_that_must_agree_are_checked_at_load(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "[concurrency]\nceiling = 4\nsoft = 0.97\n")
    err = refused(load_config, path)
    assert err.key == "concurrency.soft" and err.line == 3 and err.path == str(path)
    assert "'concurrency.soft' (0.97) must not exceed 'concurrency.hard' (0.95)" in str(err)
    write(path, "[concurrency]\nfloor = 6\n")
    err = refused(load_config, path)
    assert "'concurrency.floor' (6) must not exceed 'concurrency.ceiling' (5)" in str(err)
    assert err.line == 2


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[rules]\nparallelize = "\xff"\n')
    assert "not UTF-8" in str(refused(load_config, path))
    path.unlink()
    path.mkdir()
    assert "not a regular file" in str(refused(load_config, path))


# --- writing the global file -----------------------------------------------------------------

COMMENTED = """\
# My tierd settings. Keep this comment.
[rules]
# how to split
parallelize = "always"  # I like speed
coupled = []

[models.planner]
model = "gpt-5"  # premium
"""


def test_set_keeps_comments_and_layout(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    assert set_user_value(path, "rules.parallelize", "never", DEFAULTS) == "never"
    set_user_value(path, "rules.coupled", [["auth/", "db/"], ["ui/", "web/"]], DEFAULTS)
    set_user_value(path, "models.executor.model", "openai/qwen", DEFAULTS)
    set_user_value(path, "concurrency.ceiling", 7, DEFAULTS)
    text = path.read_text()
    for kept in (
        "# My tierd settings. Keep this comment.",
        "# how to split",
        'parallelize = "never"  # I like speed',
        'model = "gpt-5"  # premium',
    ):
        assert kept in text
    assert '    ["auth/", "db/"],\n    ["ui/", "web/"],\n' in text  # one group a line
    assert "[models.executor]" in text and "[models]" not in text
    config = load_config(path)
    assert config.get("rules.coupled") == [["auth/", "db/"], ["ui/", "web/"]]
    assert config.get("models.executor.model") == "openai/qwen"
    assert config.get("concurrency.ceiling") == 7
    assert config.get("models.planner.model") == "gpt-5"


def test_set_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tierd" / "config.toml"
    set_user_value(path, "rules.parallelize", "never", DEFAULTS)
    assert tomllib.loads(path.read_text()) == {"rules": {"parallelize": "never"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_set_is_atomic_and_keeps_the_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    path.chmod(0o640)
    set_user_value(path, "plan.max_streams", 4, DEFAULTS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    before = path.read_text()

    def crash(*_a: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(user_file.os, "replace", crash)
    # One line naming the file and the reason (a ConfigError), never a bare OSError.
    with pytest.raises(
        cfg.ConfigNotWritable, match=f"{path}: cannot write the config file: disk gone"
    ):
        set_user_value(path, "plan.max_streams", 5, DEFAULTS)
    assert path.read_text() == before  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == [".config.toml.lock", "config.toml"]


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("rules.parallelize", "sideways", "must be one of"),
        ("rules.nope", 1, "unknown key 'rules.nope'"),
        (
            "concurrency.floor",
            9,
            "'concurrency.floor' (9) must not exceed 'concurrency.ceiling' (5)",
        ),
        (
            "concurrency.hard",
            0.5,
            "'concurrency.soft' (0.8) must not exceed 'concurrency.hard' (0.5)",
        ),
    ],
)
def test_a_refused_set_writes_nothing(tmp_path: Path, key: str, value: Any, needle: str) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    err = refused(set_user_value, path, key, value, DEFAULTS)
    assert needle in str(err)
    assert err.path is None  # the new value is at fault, not a line of the file
    assert path.read_text() == COMMENTED


def test_set_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "[rules]\nparallelize = never\n")
    err = refused(set_user_value, path, "plan.max_streams", 3, DEFAULTS)
    assert err.path == str(path) and err.line == 2
    # ... but a set that repairs a file whose keys disagree is allowed.
    write(path, "[concurrency]\nsoft = 0.97\n")
    err = refused(set_user_value, path, "plan.max_streams", 3, DEFAULTS)
    assert err.path == str(path) and err.key == "concurrency.soft"
    set_user_value(path, "concurrency.hard", 0.98, DEFAULTS)
    assert load_config(path).get("concurrency.hard") == 0.98


def test_set_writes_through_a_symlink(tmp_path: Path) -> None:
    real = write(tmp_path / "dotfiles" / "tierd.toml", COMMENTED)
    link = tmp_path / "home" / "config.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    set_user_value(link, "plan.max_streams", 3, DEFAULTS)
    assert link.is_symlink()
    assert "max_streams = 3" in real.read_text()


def test_add_to_user_list_dedupes_and_serializes_writers(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", COMMENTED)
    assert add_to_user_list(path, "rules.coupled", ["auth/", "db/"], DEFAULTS) == (
        [["auth/", "db/"]],
        True,
    )
    assert add_to_user_list(path, "rules.coupled", ["auth/", "db/"], DEFAULTS) == (
        [["auth/", "db/"]],
        False,
    )
    assert "must be a list of lists of strings" in str(
        refused(add_to_user_list, path, "rules.coupled", "auth/", DEFAULTS)
    )

    def add(n: int) -> None:
        add_to_user_list(path, "rules.instructions", f"rule {n}", DEFAULTS)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(load_config(path).get("rules.instructions")) == [f"rule {n}" for n in range(8)]
    assert "# I like speed" in path.read_text()


def test_format_show(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", '[rules]\ncoupled = [["auth/", "db/"]]\n')
    lines = format_show(load_config(path)).splitlines()
    assert len(lines) == len(DEFAULTS)
    assert any(
        re.fullmatch(rf'rules\.coupled = \[\["auth/", "db/"\]\] +# global \({path}\)', x)
        for x in lines
    )
    assert len({x.index("#") for x in lines}) == 1  # the sources line up
    assert any(re.fullmatch(r'rules\.parallelize = "when-possible" +# default', x) for x in lines)


# --- the shipped file documents every key ----------------------------------------------------


def _comment_blocks() -> dict[str, str]:
    """For each key of default.toml, the comments that document it: the comment lines just
    above it, or, for the [models.*] tables, the block above the first of them."""
    blocks: dict[str, str] = {}
    table, pending, models_doc = "", [], ""
    for line in (ROOT / "config" / "default.toml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped)
        elif stripped.startswith("["):
            table = stripped.strip("[]")
            if table.startswith("models.") and pending:
                models_doc = "\n".join(pending)
            pending = []
        elif "=" in stripped:
            key = f"{table}.{stripped.split('=')[0].strip()}"
            blocks[key] = models_doc if table.startswith("models.") else "\n".join(pending)
            pending = []
    return blocks


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def test_default_toml_documents_every_key_and_what_it_allows() -> None:
    blocks = _comment_blocks()
    assert set(blocks) == set(DEFAULTS)
    for key, doc in blocks.items():
        assert doc, f"{key} has no comment in config/default.toml"
        leaf = key.rsplit(".", 1)[1]
        if key.startswith("models."):
            assert leaf in doc, key
        for choice in CHOICES.get(key, ()):
            assert f'"{choice}"' in doc, (key, choice)
        bounds = BOUNDS.get(cfg.generic_key(key))
        if bounds:
            lo, hi = bounds
            assert _plain(lo) in doc, (key, lo)
            assert _plain(hi) in doc or f"{_plain(lo)} or more" in doc, (key, hi)


# --- the CLI (a subprocess, no daemon) -------------------------------------------------------


def tierd(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIERD_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_config_set_get_show(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / "config.toml", "# keep me\n")
    done = tierd(home, "config", "set", "rules.parallelize", "never")
    assert done.returncode == 0, done.stderr
    assert 'rules.parallelize = "never"' in done.stdout
    assert tierd(home, "config", "set", "plan.max_streams", "4").returncode == 0
    text = (home / "config.toml").read_text()
    assert text.startswith("# keep me\n") and "max_streams = 4" in text

    done = tierd(home, "config", "get", "rules.parallelize", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, "never")
    done = tierd(home, "config", "get", "rules", "--json")
    assert json.loads(done.stdout)["parallelize"] == "never"

    done = tierd(home, "config", "show")
    assert done.returncode == 0
    shown = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^(\S+) = (.+?)\s+# (.+)$", done.stdout, re.M)
    }
    assert set(shown) == set(DEFAULTS)
    assert shown["rules.parallelize"] == ('"never"', f"global ({home / 'config.toml'})")
    assert shown["plan.max_streams"][0] == "4"
    assert shown["review.approval"] == ('"none"', "default")
    done = tierd(home, "config", "show", "--json")
    rows = json.loads(done.stdout)
    assert rows["rules.parallelize"] == {
        "value": "never",
        "source": f"global ({home / 'config.toml'})",
    }
    assert rows["concurrency.soft"] == {"value": 0.8, "source": "default"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ("config", "set", "rules.parallelize", "sideways"),
            '\'rules.parallelize\' must be one of "when-possible" | "always" | "never"',
        ),
        (("config", "set", "rules.nope", "1"), "unknown key 'rules.nope'"),
        (("config", "set", "plan.max_streams", "many"), "'plan.max_streams' must be an integer"),
        (
            ("config", "set", "plan.max_streams", "0"),
            "'plan.max_streams' must be between 1 and 200",
        ),
        (
            ("config", "set", "concurrency.floor", "9"),
            "'concurrency.floor' (9) must not exceed 'concurrency.ceiling' (5)",
        ),
        (("config", "set", "rules.coupled", '["auth/", "db/"]'), "list of lists of strings"),
        (("config", "get", "rules.nope"), "unknown key 'rules.nope'"),
        (("rules", "couple", "auth/"), "`rules couple` needs at least two"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_key(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    done = tierd(tmp_path, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "config.toml").exists()  # nothing written


def test_cli_rules_add_couple_list(tmp_path: Path) -> None:
    assert (
        tierd(tmp_path, "rules", "add", "Use the team's error-handling conventions").returncode == 0
    )
    assert tierd(tmp_path, "rules", "couple", "auth/", "db/").returncode == 0
    assert tierd(tmp_path, "rules", "couple", "ui/", "web/", "css/").returncode == 0
    done = tierd(tmp_path, "rules", "list")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert "when-possible" in lines[0]
    assert [x for x in lines if "auth/ + db/" in x or "ui/ + web/ + css/" in x] == lines[1:3]
    assert "Use the team's error-handling conventions" in lines[3]
    done = tierd(tmp_path, "rules", "list", "--json")
    assert json.loads(done.stdout) == {
        "parallelize": "when-possible",
        "coupled": [["auth/", "db/"], ["ui/", "web/", "css/"]],
        "instructions": ["Use the team's error-handling conventions"],
    }
    data = tomllib.loads((tmp_path / "config.toml").read_text())
    assert data["rules"]["coupled"] == [["auth/", "db/"], ["ui/", "web/", "css/"]]


@pytest.mark.parametrize(
    "args", [("config", "show"), ("rules", "list"), ("config", "set", "plan.max_streams", "3")]
)
def test_cli_on_a_broken_global_file_exits_2_with_path_and_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    write(tmp_path / "config.toml", "[rules]\nparallelize = never\n")
    done = tierd(tmp_path, *args)
    assert done.returncode == 2
    assert f"{tmp_path / 'config.toml'}, line 2: not valid TOML" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_show_with_a_project_dir(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / ".tierd.toml", '[rules]\nparallelize = "never"\n')
    done = tierd(tmp_path / "home", "config", "show", "--json", "--project-dir", str(project))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rules.parallelize"] == {
        "value": "never",
        "source": f"project ({project / '.tierd.toml'})",
    }
    write(project / ".tierd.toml", '[models.executor]\napi_key_env = "HOME"\n')
    done = tierd(tmp_path / "home", "config", "show", "--project-dir", str(project))
    assert done.returncode == 2
    assert "'models.executor.api_key_env' cannot be set in a project's" in done.stderr
