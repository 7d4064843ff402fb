"""One attempt in a real child process (workers/isolation.py, workers/child.py), without a
service: how each way a child can end is reported. No database is involved. The whole
path through the service: tests/integration/test_sandbox.py."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from workers.handlers import TaskContext
from workers.isolation import ChildProcess, HandlerFailed
from workers.protocol import WorkItem
from workers.sandbox import Sandbox

HANDLERS = textwrap.dedent(
    """
    import os
    import signal

    def echo(payload, context):
        return {"input": payload, "attempt": context.attempt, "pid": os.getpid()}

    async def echo_async(payload, context):
        return {"async": True}

    def segfault(payload, context):
        os.kill(os.getpid(), signal.SIGSEGV)

    def vanish(payload, context):
        os._exit(3)

    def not_json(payload, context):
        return {"when": object()}

    def orphan(payload, context):
        pid = os.fork()
        if pid == 0:  # a background process of the handler's own
            signal.pause()
            os._exit(0)
        return pid

    def hog(payload, context):
        return len(bytearray(payload["mib"] * 1024 * 1024))
    """
)


@pytest.fixture(autouse=True)
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "child_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(code))  # the child gets the worker's sys.path


def child(handler: str, tmp_path: Path, mib: int = 1, **fields: Any) -> ChildProcess:
    item = WorkItem(
        task_id="t",
        attempt=2,
        task_type="AUTOMATED",
        definition_id="d",
        input={"mib": mib},
        timeout_ms=10_000,
        priority="medium",
        handler=f"child_handlers:{handler}",
        isolation="process",
        **fields,
    )
    context = TaskContext("t", 2, "d", "w", 10_000)
    return ChildProcess(item, context, Sandbox(tmp_path / "attempts"))


async def test_the_handler_s_output_comes_back(tmp_path: Path) -> None:
    output = await child("echo", tmp_path).run()
    assert output["input"] == {"mib": 1} and output["attempt"] == 2
    assert output["pid"] != os.getpid()
    assert await child("echo_async", tmp_path).run() == {"async": True}


async def test_a_child_killed_by_a_signal_under_a_memory_limit_went_over_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(HandlerFailed) as limited:
        await child("segfault", tmp_path, memory=64 * 2**20).run()
    assert limited.value.error_type == "MEMORY_LIMIT_EXCEEDED"
    assert limited.value.retryable

    with pytest.raises(HandlerFailed) as unlimited:
        await child("segfault", tmp_path).run()
    assert unlimited.value.error_type == "WorkerProcessDied"
    assert str(unlimited.value) == "exit code -11"


async def test_a_child_that_exits_without_a_word_died(tmp_path: Path) -> None:
    with pytest.raises(HandlerFailed) as died:
        await child("vanish", tmp_path, memory=64 * 2**20).run()
    assert (died.value.error_type, str(died.value)) == ("WorkerProcessDied", "exit code 3")


async def test_an_output_that_is_not_json_fails_in_the_child(tmp_path: Path) -> None:
    with pytest.raises(HandlerFailed) as refused:
        await child("not_json", tmp_path).run()
    assert refused.value.error_type == "OUTPUT_NOT_JSON"  # as in the worker
    assert not refused.value.retryable


async def test_the_memory_limit_is_the_request_s_quantity(tmp_path: Path) -> None:
    assert await child("hog", tmp_path, memory=128 * 2**20).run() == 2**20
    with pytest.raises(HandlerFailed) as over:
        await child("hog", tmp_path, memory=8 * 2**20, mib=64).run()
    assert over.value.error_type == "MEMORY_LIMIT_EXCEEDED"


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def test_what_a_handler_starts_does_not_outlive_its_attempt(tmp_path: Path) -> None:
    grandchild = await child("orphan", tmp_path).run()
    for _ in range(100):
        if gone(grandchild):
            break
        await asyncio.sleep(0.05)
    assert gone(grandchild)
