"""Numbers in the configuration: every numeric key has a range, and no number (a 310-digit
integer, one beyond 64 bits, one too long for Python to print, Unicode digits) gets past the
checks as anything but a ConfigError naming the key and the allowed range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from daemon.config import layers as cfg
from daemon.config.checks import INT64
from daemon.config.layers import (
    BOUNDS,
    ConfigError,
    ConfigNotWritable,
    check_value,
    load_config,
    parse_text_value,
    set_user_value,
)
from daemon.governor.settings import ConcurrencySettings

DEFAULTS = cfg.load_defaults()
NUMERIC = sorted(
    k for k, v in DEFAULTS.items() if isinstance(v, int | float) and not isinstance(v, bool)
)


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def refused(fn: Any, *args: Any) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        fn(*args)
    return exc.value


def test_every_numeric_key_has_a_range_that_fits_a_float_and_sqlite() -> None:
    assert NUMERIC, "default.toml has numeric keys"
    for key in NUMERIC:
        bounds = BOUNDS.get(cfg.generic_key(key))
        assert bounds is not None, f"{key} has no range in daemon/config/schema.py BOUNDS"
        lo, hi = bounds
        assert INT64[0] <= lo <= DEFAULTS[key] <= hi <= INT64[1], key
        assert float(lo) <= float(hi)  # a range no float can hold would overflow here


@pytest.mark.parametrize("key", NUMERIC)
@pytest.mark.parametrize(
    "value, shown",
    [
        (int("9" * 310), "an integer of 310 digits"),  # float() overflows
        (-int("9" * 310), "an integer of 310 digits"),
        (1 << 63, "9223372036854775808"),  # one past SQLite's INTEGER
        (10**5000, "an integer of more than 4000 digits"),  # Python will not print it
    ],
    ids=["310-digits", "minus-310-digits", "int64-plus-1", "5000-digits"],
)
def test_a_huge_number_names_the_key_and_the_range(key: str, value: int, shown: str) -> None:
    err = refused(check_value, key, value, DEFAULTS)
    lo, hi = (_plain(b) for b in BOUNDS[cfg.generic_key(key)])
    assert err.key == key
    assert f"'{key}' must be between {lo} and {hi}, not {shown}" in err.message
    assert len(err.message) < 200


@pytest.mark.parametrize(
    "key, text",
    [
        # Each a digit to str.isdigit() (and most to int()), never a number to TOML or tierd.
        ("plan.max_streams", "²"),
        ("plan.max_streams", "١٢"),
        ("plan.max_streams", "５"),
        ("concurrency.soft", "0.٥"),
        ("server.port", "𝟖𝟎"),
        ("plan.max_streams", "5\nplan = 6"),  # one value, not a document
    ],
)
def test_unicode_digits_and_extra_lines_are_not_numbers(key: str, text: str) -> None:
    err = refused(parse_text_value, key, text, DEFAULTS)
    assert err.key == key and "must be " in err.message and "not " in err.message


@pytest.mark.parametrize(
    "key, text, needle",
    [
        ("concurrency.soft", "9" * 310, "between 0.05 and 1, not an integer of 310 digits"),
        ("concurrency.soft", "9" * 5000, "not an integer of more than 4000 digits"),
        ("plan.max_streams", "-" + "9" * 5000, "between 1 and 200"),
        ("plan.max_streams", "9_" * 2500 + "9", "between 1 and 200"),
        ("models.executor.timeout_s", "1e400", "must be a finite number"),
        ("models.executor.timeout_s", "nan", "must be a finite number"),
    ],
)
def test_huge_numbers_typed_on_the_command_line(key: str, text: str, needle: str) -> None:
    err = refused(parse_text_value, key, text, DEFAULTS)
    assert needle in err.message and err.key == key


def test_ordinary_numbers_still_pass() -> None:
    assert parse_text_value("plan.max_streams", "12", DEFAULTS) == 12
    assert parse_text_value("plan.max_streams", "1_2", DEFAULTS) == 12
    assert parse_text_value("concurrency.soft", "1", DEFAULTS) == 1.0
    assert check_value("concurrency.reserve_bytes", 1 << 50, DEFAULTS) == 1 << 50
    assert check_value("models.executor.timeout_s", 86_400, DEFAULTS) == 86_400.0
    assert isinstance(check_value("models.executor.timeout_s", 5, DEFAULTS), float)


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("models.executor.model", 10**5000, "not an integer of more than 4000 digits"),
        ("models.executor.fallbacks", [10**5000], "not a list too large to show"),
        ("rules.parallelize", "x" * 5000, "(5002 characters)"),
    ],
    ids=["int-for-string", "int-in-list", "long-string"],
)
def test_a_huge_value_of_another_type_is_never_echoed_whole(
    key: str, value: Any, needle: str
) -> None:
    err = refused(check_value, key, value, DEFAULTS)
    assert needle in err.message and len(err.message) < 300


@pytest.mark.parametrize(
    "digits, needle",
    [(310, "must be between 0.05 and 1"), (5000, "more than 4000 digits")],
)
def test_a_huge_number_in_the_config_file_names_path_line_and_key(
    tmp_path: Path, digits: int, needle: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"# mine\n[concurrency]\nsoft = {'9' * digits}\n", encoding="utf-8")
    err = refused(load_config, path)
    assert err.path == str(path) and err.line == 3 and needle in err.message


def test_the_governor_refuses_an_integer_too_large_for_a_float() -> None:
    with pytest.raises(ConfigError, match=r"'concurrency\.soft' must be a finite number"):
        ConcurrencySettings.from_config({"soft": int("9" * 310)})


def test_a_config_file_that_cannot_be_written_is_config_not_writable(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("a file where the directory should be")
    config_file = tmp_path / "home" / "config.toml"
    with pytest.raises(ConfigNotWritable) as refused_write:
        set_user_value(config_file, "plan.max_streams", 5, DEFAULTS)
    assert str(config_file) in str(refused_write.value)
    assert "cannot write the config file" in str(refused_write.value)
    assert refused_write.value.errno is not None
    assert isinstance(refused_write.value, ConfigError)  # callers that catch ConfigError: ok


def test_cli_config_set_of_a_huge_number_exits_2_naming_the_range(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "TIERD_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "config", "set", "concurrency.soft", "9" * 5000],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "'concurrency.soft' must be between 0.05 and 1" in done.stderr
