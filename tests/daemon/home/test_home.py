"""The home: a directory tierd cannot write is one clear error (even for root, even on a
read-only mount), and daemon.json carries an instance id a client checks before it sends the
token."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from daemon.home.discovery import (
    HEALTH_INSTANCE_FIELD,
    Discovery,
    identity_problem,
    new_instance_id,
    read_discovery,
    write_discovery,
)
from daemon.home.paths import HomeNotWritable, Homes, ensure_writable_dir


def _homes(root: Path) -> Homes:
    return Homes(root, root, root)


def _refusal(root: Path) -> HomeNotWritable:
    with pytest.raises(HomeNotWritable) as refused:
        _homes(root).ensure()
    message = str(refused.value)
    assert "\n" not in message and str(root) in message
    return refused.value


def test_ensure_creates_private_directories_and_leaves_nothing_behind(tmp_path: Path) -> None:
    homes = Homes(tmp_path / "c" / "tierd", tmp_path / "d" / "tierd", tmp_path / "s" / "tierd")
    homes.ensure()
    for d in (homes.config_dir, homes.data_dir, homes.state_dir):
        assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700
        assert list(d.iterdir()) == []  # the write check cleaned up after itself
    homes.ensure()  # again: nothing to do


def test_a_file_where_the_home_should_be(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    assert "exists and is not a directory" in _refusal(home).problem


def test_a_home_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    refused = _refusal(tmp_path / "file" / "home")
    assert "Not a directory" in refused.problem


def test_a_home_under_proc_cannot_be_created() -> None:
    refused = _refusal(Path("/proc/tierd-home-test"))
    assert refused.problem.startswith("cannot create it")


def test_an_existing_directory_that_refuses_files_even_to_root() -> None:
    # sysfs refuses new files to everyone, root included, though os.access says yes.
    target = Path("/sys/kernel")
    assert target.is_dir(), "this test needs sysfs mounted at /sys"
    refused = _refusal(target)
    assert refused.problem.startswith("cannot write in it")


def _unshare_usable() -> bool:
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


def _needs_unshare() -> None:
    if not _unshare_usable():
        pytest.fail("this test needs `unshare -rm` (util-linux; user and mount namespaces)")


def _read_only(
    directory: Path, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` where `directory` is a read-only bind mount (a private mount namespace:
    nothing outside the command sees it)."""
    script = (
        f'mount --bind "{directory}" "{directory}" && '
        f'mount -o remount,bind,ro "{directory}" && exec "$@"'
    )
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_read_only_mount_as_the_home_and_above_it(tmp_path: Path) -> None:
    _needs_unshare()
    ro = tmp_path / "ro"
    ro.mkdir()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from daemon.home.paths import HomeNotWritable, Homes\n"
        "for root in sys.argv[1:]:\n"
        "    try:\n"
        "        Homes(Path(root), Path(root), Path(root)).ensure()\n"
        "    except HomeNotWritable as exc:\n"
        "        print(exc)\n"
    )
    done = _read_only(ro, sys.executable, "-c", code, str(ro), str(ro / "sub" / "home"))
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert len(lines) == 2, done.stdout
    assert str(ro) in lines[0] and "cannot write in it (Read-only file system)" in lines[0]
    assert str(ro / "sub" / "home") in lines[1] and "Read-only file system" in lines[1]


def test_config_set_in_a_read_only_home_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _needs_unshare()
    home = tmp_path / "home"
    home.mkdir()
    done = _read_only(
        home,
        sys.executable,
        "-m",
        "daemon.cli",
        "config",
        "set",
        "plan.max_streams",
        "5",
        env={"TIERD_HOME": str(home)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert str(home / "config.toml") in done.stderr and "Read-only file system" in done.stderr
    assert not (home / "config.toml").exists()


def test_serve_in_a_read_only_home_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _needs_unshare()
    home = tmp_path / "home"
    home.mkdir()
    done = _read_only(
        home,
        sys.executable,
        "-m",
        "daemon.cli",
        "serve",
        "--port",
        "0",
        env={"TIERD_HOME": str(home)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert str(home) in done.stderr and "Read-only file system" in done.stderr


def test_ensure_writable_dir_is_usable_alone(tmp_path: Path) -> None:
    ensure_writable_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


# --- daemon.json and the daemon's identity ---------------------------------------------------


def test_discovery_carries_an_instance_id_that_healthz_must_echo(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    instance = new_instance_id()
    assert instance != new_instance_id() and len(instance) == 32
    info = Discovery("http://127.0.0.1:1234", "tok", os.getpid(), "1.0", instance)
    write_discovery(path, info)
    assert json.loads(path.read_text())[HEALTH_INSTANCE_FIELD] == instance
    back = read_discovery(path)
    assert back == info
    assert identity_problem(back, {"ok": True, HEALTH_INSTANCE_FIELD: instance}) is None
    for health in (
        {"ok": True},  # a server that is not tierd, or a tierd that does not say
        {"ok": True, HEALTH_INSTANCE_FIELD: new_instance_id()},  # another daemon
        {"ok": True, HEALTH_INSTANCE_FIELD: 5},
        ["not", "an", "object"],
        None,
    ):
        problem = identity_problem(back, health)
        assert problem is not None and "is not the tierd daemon" in problem


def test_an_old_discovery_file_reads_but_cannot_be_verified(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    old = {"url": "http://127.0.0.1:1", "token": "t", "pid": os.getpid(), "version": "0.1"}
    path.write_text(json.dumps(old))
    info = read_discovery(path)
    assert info is not None and info.instance_id is None
    assert info.as_dict() == old  # written back as it was
    problem = identity_problem(info, {"ok": True, HEALTH_INSTANCE_FIELD: "anything"})
    assert problem is not None and "cannot be verified" in problem


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"x"',
        '{"url": "u", "token": "t", "pid": -5}',
        '{"url": "u", "token": "t", "pid": 0}',
        '{"url": "u", "token": "t", "pid": ' + "9" * 40 + "}",
        '{"url": "u", "token": "t", "pid": 1e400}',
        '{"url": "u", "token": "t", "pid": "' + "9" * 5000 + '"}',
        '{"url": "u", "token": "t"}',
    ],
)
def test_a_damaged_discovery_file_is_no_daemon(tmp_path: Path, text: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    assert read_discovery(path) is None


def test_an_empty_instance_id_counts_as_none(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(
        json.dumps({"url": "u", "token": "t", "pid": os.getpid(), HEALTH_INSTANCE_FIELD: ""})
    )
    info = read_discovery(path)
    assert info is not None and info.instance_id is None
