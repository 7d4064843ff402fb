"""Scheduled tasks across restarts of every process (issue 24, item 1): tasks scheduled a
few seconds ahead wait while ``serve``, the worker and nats-server are all killed
(SIGKILL) and started again; each still starts on time (within a second of its time)
and exactly once, a task cancelled while it waited never runs, and ``taskexec verify``
agrees. Real processes, loopback only, bounded."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.messaging import connect_nats
from tests.faults.nats_restart import RestartableNats
from tests.faults.stack import Stack, settle
from workers.protocol import WORK_STREAM

TASKS = 40
AHEAD_S = 12.0  # time enough to restart everything before the first is due

# The stack runs on a nats-server a test may kill and restart (conftest.py).
pytestmark = pytest.mark.restartable_nats


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def held_in_stream(url: str) -> int:
    nc = await connect_nats(url, name="test-scheduled")
    try:
        return (await nc.jetstream().stream_info(WORK_STREAM)).state.messages
    finally:
        await nc.close()


def test_scheduled_tasks_start_on_time_once_after_every_process_restarted(
    stack: Stack, nats: RestartableNats, tmp_path: Path
) -> None:
    base = stack.serve("serve")
    stack.worker("w1")
    first = datetime.now(UTC) + timedelta(seconds=AHEAD_S)
    due = [first + timedelta(milliseconds=100 * n) for n in range(TASKS)]
    body = {
        "tasks": [
            {"taskDefinitionId": "slow", "input": {"seconds": 0.01}, "scheduledAt": rfc3339(at)}
            for at in due
        ]
    }
    client = httpx.Client(headers={"X-API-Key": stack.key}, timeout=10)
    answer = client.post(f"{base}/api/v1/tasks/bulk", json=body)
    assert answer.status_code == 200, answer.text
    ids = [item["task"]["id"] for item in answer.json()["items"]]
    cancelled = ids.pop()
    assert client.post(f"{base}/api/v1/tasks/{cancelled}/cancel").status_code == 200
    deadline = time.monotonic() + 10  # the relay published every schedule
    while asyncio.run(held_in_stream(nats.url)) < TASKS:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.1)

    stack.kill("serve")
    stack.kill("w1")
    nats.kill()
    time.sleep(1.0)
    nats.start()  # same port, same store: the schedules are in it
    base = stack.serve("serve")
    stack.worker("w1")
    restarted = datetime.now(UTC)
    ahead = (first - restarted).total_seconds()
    print(f"\nevery process restarted {ahead:.1f} s before the first was due")
    assert restarted < first - timedelta(seconds=2), "restarts took too long to test anything"

    outcome = settle(stack.database_url, ids, 60 + AHEAD_S)
    print(outcome.summary())
    assert outcome.stuck == [] and set(outcome.terminal_events) == {1}, stack.logs()
    assert outcome.ran_twice == 0 and outcome.statuses == {"COMPLETED": len(ids)}
    late = []
    for task_id, at in zip(ids, due, strict=False):
        shown = client.get(f"{base}/api/v1/tasks/{task_id}").json()
        started = datetime.fromisoformat(
            shown["executionMetadata"]["startTime"].replace("Z", "+00:00")
        )
        late.append((started - at).total_seconds())
    print(f"start delays: min {min(late):.3f} s, max {max(late):.3f} s")
    assert all(0 <= delay < 1.0 for delay in late), late
    assert set(stack.slow_runs().values()) == {1}  # the handler ran once per task
    assert len(stack.slow_runs()) == len(ids)  # and never for the cancelled one
    shown = client.get(f"{base}/api/v1/tasks/{cancelled}").json()
    assert (shown["status"], shown["attempts"]) == ("CANCELLED", 0)
    client.close()
    stack.cli("verify")
