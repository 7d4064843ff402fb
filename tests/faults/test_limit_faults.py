"""Concurrency limits under faults: of three workers, one holding a slot of a definition
with ``maxConcurrency: 2`` is SIGKILLed mid-attempt. Every task still ends exactly once
(the killed attempt runs again elsewhere), never more than two attempts run at once, and
the killed worker's slot comes back within the ack wait: the other two workers run two at
once again. Real processes (serve, workers, nats-server, the database), loopback only,
bounded; ``taskexec verify`` agrees."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.nats_restart import RestartableNats
from tests.faults.stack import Stack, settle

SETTLE_S = 120.0
HANDLER = textwrap.dedent(
    """
    import os, pathlib, time, uuid

    def record(payload, context):
        # "start|end <run> <worker> <ns>", one line each, appended (a killed run has no end)
        run = uuid.uuid4().hex
        def note(kind):
            with open(os.environ["LIMIT_EVENTS"], "a") as events:
                events.write(f"{kind} {run} {context.worker} {time.monotonic_ns()}\\n")
        note("start")
        time.sleep(payload["seconds"])
        note("end")
        return {}
    """
)
LIMITED = {
    "id": "slow-limited",
    "name": "Slow, two at a time",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 30_000,
    "executionConfig": {"handler": "limit_handlers:record", "maxConcurrency": 2},
}


@pytest.fixture
def stack(database_url: str, nats: RestartableNats, tmp_path: Path) -> Iterator[Stack]:
    events = tmp_path / "events.txt"
    running = Stack(database_url, nats.url, tmp_path, env={"LIMIT_EVENTS": str(events)})
    (tmp_path / "code" / "limit_handlers.py").write_text(HANDLER)
    (tmp_path / "definitions" / "slow-limited.json").write_text(json.dumps(LIMITED))
    yield running
    running.stop_all()


Run = tuple[str, int, int | None]  # worker, start, end (None: killed)


def runs(stack: Stack) -> dict[str, Run]:
    """Every run of the handler, by run id."""
    path = stack.dir / "events.txt"
    found: dict[str, Run] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, run, worker, ns = line.split()
        if kind == "start":
            found[run] = (worker, int(ns), found.get(run, ("", 0, None))[2])
        else:
            found[run] = (worker, found[run][1], int(ns))
    return found


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    """The most intervals open at one moment (an end before a start at the same one)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = most = 0
    for _, step in points:
        running += step
        most = max(most, running)
    return most


def test_a_worker_killed_holding_a_slot_gives_it_back_within_the_ack_wait(
    stack: Stack,
) -> None:
    base = stack.serve("serve")
    for name in ("w1", "w2", "w3"):
        stack.worker(name, concurrency=4)
    ids = []
    with httpx.Client(timeout=10, headers={"X-API-Key": stack.key}) as client:
        for _ in range(12):
            body = {"taskDefinitionId": "slow-limited", "input": {"seconds": 1.0}}
            answer = client.post(f"{base}/api/v1/tasks", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    deadline = time.monotonic() + 60
    while not (running := [r for r in runs(stack).values() if r[2] is None]):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.02)
    victim = running[0][0]
    stack.kill(victim)  # mid-attempt, holding a slot: never handed back
    killed_at = time.monotonic_ns()

    outcome = settle(stack.database_url, ids, SETTLE_S)
    assert outcome.stuck == [], f"{outcome.summary()}\n{stack.logs()}"
    assert dict(outcome.statuses) == {"COMPLETED": len(ids)}, outcome.summary()
    assert set(outcome.terminal_events) == {1}, outcome.summary()  # exactly one end each
    stack.cli("verify")

    found = list(runs(stack).values())
    killed = [r for r in found if r[2] is None]
    assert killed and {w for w, _, _ in killed} == {victim}, found
    # A killed run lasted until the kill at the latest: never more than two at once.
    assert most_at_once([(s, e if e is not None else killed_at) for _, s, e in found]) <= 2
    after = [(s, e) for w, s, e in found if s > killed_at and e is not None]
    assert {w for w, s, _ in found if s > killed_at} <= {"w1", "w2", "w3"} - {victim}
    assert most_at_once(after) == 2  # the killed worker's slot came back to the others
    assert len(found) == len(ids) + len(killed)  # each killed attempt ran once more
