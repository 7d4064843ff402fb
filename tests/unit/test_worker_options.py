"""``taskexec worker --cpus N --memory Q --run-as USER``: the options win over their
variables, bad quantities and users are refused naming the option."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.cli import worker_limits
from api.cli.main import build_parser, main
from api.settings import Settings


def test_the_options_win_over_the_variables() -> None:
    args = build_parser().parse_args(["worker", "--cpus", "1.5", "--memory", "1Gi"])
    settings = Settings(worker_cpus=8000, worker_memory=1 << 40)
    capacity = worker_limits.capacity(settings, args)
    assert (capacity.millicpu, capacity.memory_bytes) == (1500, 1 << 30)


def test_the_variables_count_when_no_option_is_given() -> None:
    args = build_parser().parse_args(["worker", "--cpus", "250m"])
    capacity = worker_limits.capacity(Settings(worker_memory=512 * 2**20), args)
    assert (capacity.millicpu, capacity.memory_bytes) == (250, 512 * 2**20)
    unlimited = worker_limits.capacity(Settings(), build_parser().parse_args(["worker"]))
    assert not unlimited.limited


@pytest.mark.parametrize(
    ("option", "text"), [("--memory", "4GB"), ("--cpus", "two"), ("--cpus", "0")]
)
def test_a_bad_quantity_is_refused_naming_the_option(
    option: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["worker", option, text])
    assert refused.value.code == 2
    assert f"argument {option}: {option}" in capsys.readouterr().err


def test_run_as_names_a_user_and_the_attempts_live_under_the_var_dir(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    args = build_parser().parse_args(["worker", "--run-as", "no-such-user-here"])
    with pytest.raises(ValueError, match="no user named 'no-such-user-here'"):
        worker_limits.sandbox(settings, args)
    sandbox = worker_limits.sandbox(settings, build_parser().parse_args(["worker"]))
    assert sandbox.base == tmp_path / "attempts" and sandbox.run_as is None
    if os.geteuid() == 0:
        nobody = build_parser().parse_args(["worker", "--run-as", "nobody"])
        assert worker_limits.sandbox(settings, nobody).run_as is not None


def test_a_worker_with_a_run_as_that_cannot_be_does_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKEXEC_NATS_URL", "nats://127.0.0.1:1")  # never reached
    monkeypatch.setenv("TASKEXEC_VAR_DIR", str(tmp_path))
    assert main(["worker", "--run-as", "no-such-user-here"]) == 2
    assert "taskexec worker: --run-as: no user named 'no-such-user-here'" in capsys.readouterr().err
