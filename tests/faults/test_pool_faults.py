"""Executor pools under faults: a pool's worker SIGKILLed mid-attempt while another
worker of the pool runs (its attempts finish on the other, never on a worker of another
pool); the nats-server SIGKILLed and restarted while a pool's work waits for a worker
(none lost: it runs once a worker of the pool joins). Real processes (serve, workers,
nats-server, the database), loopback only, bounded; every task ends exactly once and
``taskexec verify`` agrees."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.nats_restart import RestartableNats
from tests.faults.stack import POOL_B, Stack, settle

SETTLE_S = 120.0

# The stack runs on a nats-server a test may kill and restart (conftest.py).
pytestmark = pytest.mark.restartable_nats


def submit(base: str, key: str, count: int, seconds: float) -> list[str]:
    ids = []
    with httpx.Client(timeout=10, headers={"X-API-Key": key}) as client:
        for _ in range(count):
            body = {"taskDefinitionId": "slow-b", "input": {"seconds": seconds}}
            answer = client.post(f"{base}/api/v1/tasks", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


def runs_by_worker(stack: Stack) -> dict[str, set[str]]:
    """The task ids each worker ran the ``slow`` handler of (any attempt)."""
    runs = stack.dir / "runs.txt"
    found: dict[str, set[str]] = {}
    for line in runs.read_text().splitlines() if runs.exists() else []:
        task_id, _, worker = line.split()
        found.setdefault(worker, set()).add(task_id)
    return found


def until_running_on(stack: Stack, worker: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while worker not in runs_by_worker(stack):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.05)


def check(stack: Stack, ids: list[str]) -> None:
    outcome = settle(stack.database_url, ids, SETTLE_S)
    ran = {worker: len(tasks) for worker, tasks in runs_by_worker(stack).items()}
    print(f"\n{outcome.summary()}; tasks run per worker: {ran}")
    assert outcome.stuck == [], f"{outcome.summary()}\n{stack.logs()}"
    assert dict(outcome.statuses) == {"COMPLETED": len(ids)}, outcome.summary()
    assert set(outcome.terminal_events) == {1}, outcome.summary()  # exactly one end each
    stack.cli("verify")  # exit 0: chains, replays and read models agree (asserted in cli)


def test_a_pool_worker_killed_mid_attempt_its_work_ends_on_the_pools_other_worker(
    stack: Stack,
) -> None:
    base = stack.serve("serve")
    stack.worker("standard")  # the default pool only: never runs slow-b
    stack.worker("b1", concurrency=4, executors=POOL_B)
    ids = submit(base, stack.key, 12, seconds=1.0)
    until_running_on(stack, "b1")
    stack.worker("b2", concurrency=4, executors=POOL_B)
    stack.kill("b1")  # mid-attempt: its work comes back to b2 after the ack wait

    check(stack, ids)
    ran = runs_by_worker(stack)
    assert set(ran) <= {"b1", "b2"}, ran  # only the pool's workers
    assert ran["b1"] & ran["b2"], ran  # attempts b1 was killed in ran again on b2


def test_nats_killed_and_restarted_while_a_pools_work_waits_loses_none_of_it(
    stack: Stack, nats: RestartableNats
) -> None:
    base = stack.serve("serve")
    stack.worker("standard")  # no worker of pool-b yet: its work waits in TASK_WORK
    ids = submit(base, stack.key, 20, seconds=0.05)
    time.sleep(1.0)  # the relay has published them (at most a batch is still on its way)
    nats.kill()
    time.sleep(2.0)
    nats.start()  # same port, same store
    assert runs_by_worker(stack) == {}  # nothing of pool-b ran anywhere meanwhile
    stack.worker("b1", executors=POOL_B)  # joins after the restart

    check(stack, ids)
    assert set(runs_by_worker(stack)) == {"b1"}
