"""Unit tests of workers/sandbox.py: the directories of dead workers are removed at start,
those of live ones kept; a HIGH attempt's environment; who may run HIGH attempts.
(A real HIGH attempt: tests/integration/test_sandbox.py; a worker killed mid-attempt:
tests/faults/test_sandbox_faults.py.)"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from workers.sandbox import RunAs, Sandbox


def test_a_worker_removes_what_a_dead_worker_left_and_keeps_a_live_one_s(tmp_path: Path) -> None:
    live = Sandbox(tmp_path)
    live.open()
    live_dir = live.attempt_dir()
    dead = tmp_path / "worker-dead"
    (dead / "attempt-1").mkdir(parents=True)
    (dead / "attempt-1" / "left.txt").write_text("x")
    (tmp_path / "worker-dead.lock").touch()  # nobody holds it: its worker is gone

    starting = Sandbox(tmp_path)
    starting.open()

    assert not dead.exists() and not (tmp_path / "worker-dead.lock").exists()
    assert live_dir.is_dir()  # its lock is held: alive
    assert len(list(tmp_path.glob("worker-*.lock"))) == 2
    live.close()
    starting.close()
    assert list(tmp_path.iterdir()) == []


def test_attempt_directories_are_fresh_empty_and_removable(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    sandbox.open()
    first, second = sandbox.attempt_dir(), sandbox.attempt_dir()
    assert first != second and list(first.iterdir()) == [] and first.stat().st_mode & 0o777 == 0o700
    (first / "f").write_text("x")
    sandbox.remove(first)
    assert not first.exists() and second.exists()
    sandbox.close()
    assert not second.exists()


def test_the_environment_holds_only_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("API_TOKEN", "t0k3n")
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    monkeypatch.delenv("TZ", raising=False)

    env = Sandbox.environment(tmp_path, ["API_TOKEN", "NOT_SET_ANYWHERE"])

    assert env["PATH"] == "/usr/bin" and env["API_TOKEN"] == "t0k3n"
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path)
    assert "DATABASE_PASSWORD" not in env and "NOT_SET_ANYWHERE" not in env and "TZ" not in env
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "API_TOKEN"}


def test_a_root_worker_runs_high_attempts_only_with_run_as(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        assert Sandbox(tmp_path).refusal() is None  # its own user is unprivileged
        return
    assert "--run-as" in (Sandbox(tmp_path).refusal() or "")
    nobody = RunAs.named("nobody")
    assert nobody.uid == pwd.getpwnam("nobody").pw_uid
    assert Sandbox(tmp_path, nobody).refusal() is None


@pytest.mark.parametrize(
    ("name", "fragment"), [("no-such-user-here", "no user named"), ("root", "is root")]
)
def test_run_as_must_name_an_unprivileged_user(name: str, fragment: str) -> None:
    if os.geteuid() != 0 and name == "root":
        pytest.skip("a worker that is not root is refused first")
    with pytest.raises(ValueError, match=fragment):
        RunAs.named(name)


def test_a_base_that_cannot_be_made_stops_only_high_attempts(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sandbox = Sandbox(blocker / "attempts")
    sandbox.open()  # logged: the worker still starts
    with pytest.raises(NotADirectoryError):
        sandbox.attempt_dir()
    sandbox.close()
