"""A worker killed (SIGKILL) while a ``HIGH`` attempt runs: its child dies with it, the
attempt's directory it could not remove is removed by the next worker that starts on the
same var dir, and the task completes on that worker. Real processes, both databases."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.stack import ROOT, Stack

HANDLER = textwrap.dedent(
    """
    import os
    import time

    def linger(payload, context):
        record = os.path.join(payload["records"], f"{context.worker}-{context.attempt}")
        with open(record, "w") as out:
            out.write(f"{os.getcwd()} {os.getpid()}")
        if context.worker == payload["slow_on"]:
            time.sleep(120)
        return {"worker": context.worker, "uid": os.getuid()}
    """
)
HIGH = {
    "id": "high-linger",
    "name": "High, lingering",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 60_000,
    "retryPolicy": {"maxRetries": 0, "retryInterval": 0, "backoffMultiplier": 1},
    "executionConfig": {
        "handler": "sandbox_fault_handlers:linger",
        "securityContext": {"securityLevel": "HIGH"},
    },
}
RUN_AS = ("--run-as", "nobody")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """The handler's code and the records it writes, reachable by ``nobody``."""
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    path = Path(tempfile.mkdtemp(prefix="taskexec-sandbox-fault-"))
    path.chmod(0o755)
    (path / "code").mkdir(mode=0o755)
    (path / "code" / "sandbox_fault_handlers.py").write_text(HANDLER)
    (path / "records").mkdir()
    (path / "records").chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def high_stack(stack: Stack, public_dir: Path) -> Stack:
    (stack.dir / "definitions" / "high.json").write_text(json.dumps(HIGH))
    path = os.pathsep.join([str(public_dir / "code"), str(stack.dir / "code"), str(ROOT)])
    stack.env["PYTHONPATH"] = path
    return stack


def wait_for(check: Callable[[], bool], within_s: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{stack.logs()}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_worker_s_high_attempt_leaves_nothing_for_good(
    high_stack: Stack, public_dir: Path
) -> None:
    stack = high_stack
    base = stack.serve("serve")
    stack.worker("a", options=RUN_AS)
    payload = {"records": str(public_dir / "records"), "slow_on": "a"}
    created = httpx.post(
        f"{base}/api/v1/tasks",
        json={"taskDefinitionId": "high-linger", "input": payload},
        headers={"X-API-Key": stack.key},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    record = public_dir / "records" / "a-1"
    wait_for(record.exists, 60, "the attempt never started on worker a", stack)
    cwd_text, pid_text = record.read_text().split()
    cwd, child = Path(cwd_text), int(pid_text)
    assert cwd.is_dir() and cwd.is_relative_to(stack.dir / "var" / "attempts")

    stack.kill("a")
    wait_for(lambda: not alive(child), 10, "the HIGH child outlived its worker", stack)
    assert cwd.is_dir()  # nobody could remove it: the worker died at once

    stack.worker("b", options=RUN_AS)

    def completed() -> bool:
        url = f"{base}/api/v1/tasks/{task_id}"
        body = httpx.get(url, headers={"X-API-Key": stack.key}, timeout=10).json()
        assert body["status"] in ("PENDING", "RUNNING", "COMPLETED"), body
        return bool(body["status"] == "COMPLETED")

    wait_for(completed, 90, "the task never completed on worker b", stack)
    body = httpx.get(
        f"{base}/api/v1/tasks/{task_id}", headers={"X-API-Key": stack.key}, timeout=10
    ).json()
    assert body["output"] == {"worker": "b", "uid": pwd.getpwnam("nobody").pw_uid}
    assert not cwd.exists() and not cwd.parent.exists()  # removed when b started
    assert "removed the attempt directories of dead workers (1)" in stack.logs()
