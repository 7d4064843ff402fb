"""Retrying many failed tasks while things die: ``taskexec tasks retry`` requeues 1,500
FAILED tasks; once its first transaction is in, ``serve`` and the command itself are
killed (SIGKILL), ``serve`` is restarted and the command run again, and ``serve`` is
killed once more while the requeued work runs. Every task is requeued once and runs to
completion exactly once more (its handler too), and ``taskexec verify`` agrees.

Real processes (serve, a worker, the command line, nats-server, the database), loopback
only, bounded. Prints what happened to the command and the tasks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from uuid import UUID

import httpx

from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from tests.faults.stack import Stack, settle

TASKS = 1500
HANDLERS = textwrap.dedent(
    """
    import os

    class Broken(Exception):
        pass

    def flaky(payload, context):
        with open(os.environ["FAULT_RUNS"], "a") as runs:  # one line per run: re-runs show
            runs.write(f"{context.task_id} {context.attempt} {context.worker}\\n")
        if os.path.exists(os.environ["FAULT_BROKEN"]):
            raise Broken("the dependency is down")
        return {"attempt": context.attempt}
    """
)
FLAKY = {
    "id": "flaky",
    "name": "Flaky",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 30_000,
    "retryPolicy": {"maxRetries": 0},
    "executionConfig": {"handler": "retry_handlers:flaky"},
}
RETRY = ("tasks", "retry", "--status", "FAILED", "--error-type", "Broken", "--reason", "mended")


def submit_all(base: str, key: str) -> list[str]:
    ids: list[str] = []
    body = {"taskDefinitionId": "flaky", "input": {}}
    with httpx.Client(timeout=30, headers={"X-API-Key": key}) as client:
        for _ in range(TASKS // 500):
            response = client.post(f"{base}/api/v1/tasks/bulk", json={"tasks": [body] * 500})
            assert response.status_code == 200, response.text
            ids += [item["task"]["id"] for item in response.json()["items"]]
    return ids


def store(database_url: str) -> TaskService:
    config = DatabaseConfig.from_url(database_url)
    return TaskService(config.eventsourcing_env(pool_size=2), DefinitionCatalog([]))


def history(database_url: str, ids: list[str]) -> dict[str, list[str]]:
    """Each task's event names, from the event store."""
    service = store(database_url)
    try:
        return {t: [type(e).__name__ for e in service.events.get(UUID(t))] for t in ids}
    finally:
        service.close()


def until_it_records(database_url: str, process: subprocess.Popen[bytes]) -> int:
    """Wait until the store holds events past its head now (the command's first batch
    of requeues), or the process ended; the requeues recorded so far."""
    service = store(database_url)
    try:
        head = service.recorder.max_notification_id() or 0
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if (service.recorder.max_notification_id() or 0) > head:
                break
            time.sleep(0.005)
        return (service.recorder.max_notification_id() or 0) - head
    finally:
        service.close()


def test_retrying_many_while_serve_and_the_command_are_killed(stack: Stack) -> None:
    (stack.dir / "code" / "retry_handlers.py").write_text(HANDLERS)
    (stack.dir / "definitions" / "flaky.json").write_text(json.dumps(FLAKY))
    broken = stack.dir / "broken"
    broken.touch()
    stack.env["FAULT_BROKEN"] = str(broken)
    base = stack.serve("serve")
    stack.worker("w1")
    ids = submit_all(base, stack.key)
    failed = settle(stack.database_url, ids, 120)
    assert failed.statuses == {"FAILED": TASKS}, f"{failed.summary()}\n{stack.logs()}"
    broken.unlink()  # mended: from now on every run succeeds

    # The command runs; serve dies under it, and the command is killed too if still going.
    log = (stack.dir / "retry-1.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-m", "api.cli", *RETRY],
        env=stack.env,
        cwd=stack.dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    until_it_records(stack.database_url, first)
    killed_mid_run = first.poll() is None
    if killed_mid_run:
        first.kill()
    stack.kill("serve")
    first.wait(30)
    requeued_before = sum(
        "Requeued" in names for names in history(stack.database_url, ids).values()
    )
    stack.serve("serve")
    second = stack.cli(*RETRY)  # run again: the rest, nothing twice
    time.sleep(1.0)
    stack.kill("serve")  # once more, while the requeued work runs and reports come back
    stack.serve("serve")
    third = stack.cli(*RETRY)
    print(
        f"\nfirst run {'killed mid-run' if killed_mid_run else f'ended ({first.returncode})'}"
        f" with {requeued_before} of {TASKS} requeued\n"
        f"second run: {second.strip()}\nthird run: {third.strip()}"
    )
    assert f"retried {TASKS - requeued_before:,} of" in second
    assert "retried 0 of" in third  # nothing FAILED is left to retry

    outcome = settle(stack.database_url, ids, 120)
    print(outcome.summary())
    assert outcome.statuses == {"COMPLETED": TASKS}, f"{outcome.summary()}\n{stack.logs()}"
    events = history(stack.database_url, ids)
    expected = ["Submitted", "Started", "Failed", "Requeued", "Started", "Completed"]
    assert Counter(tuple(names) for names in events.values()) == {tuple(expected): TASKS}
    runs = stack.slow_runs()  # "task attempt" -> how many times the handler ran it
    assert {(t, attempt) for t in ids for attempt in (1, 2)} == {
        (key.split()[0], int(key.split()[1])) for key in runs
    }
    assert set(runs.values()) == {1}, [k for k, n in runs.items() if n > 1][:5]
    stack.cli("verify")  # exit 0: chains, replays and read models agree
