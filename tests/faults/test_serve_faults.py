"""``taskexec serve`` killed mid-load, and several replicas at once: no acknowledged task
is lost or stranded, each ends exactly once, and ``taskexec verify`` agrees.

Real processes (serve, workers, nats-server, the database), loopback only, bounded.
Each test prints what became of the tasks (see tests/faults/stack.py's ``Outcome``).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from commands.fast_paths import FastPaths
from tests.faults.stack import Load, Outcome, Stack, failed_tracebacks, settle
from workers.nats_server import EmbeddedNatsServer

SETTLE_S = 120.0  # reports held by a killed serve come back after the results ack wait


def check(stack: Stack, load: Load, outcome: Outcome) -> None:
    print(f"\n{outcome.summary()}; refused while down: {load.refused}")
    assert load.acknowledged, stack.logs()
    assert outcome.stuck == [], f"{outcome.summary()}\n{stack.logs()}"
    assert set(outcome.terminal_events) == {1}, outcome.summary()  # exactly one end each
    stack.cli("verify")  # exit 0: chains, replays and read models agree (asserted in cli)


def check_tracebacks(stack: Stack, base: str, ids: list[str]) -> None:
    """Every failing task (its handler raised, its report maybe in flight through a
    killed serve) kept its traceback: in its ``Failed`` event and in ``GET`` (the read
    model; ``verify`` compared it with the replay too)."""
    assert ids, "no failing task was acknowledged"
    for task_id, trace in failed_tracebacks(stack.database_url, ids).items():
        assert trace is not None, task_id
        assert "charge_card" in trace and "Declined: card declined for" in trace, trace
    headers = {"X-API-Key": stack.key}
    deadline = time.monotonic() + 30  # the read model may be a moment behind the store
    for task_id in ids:
        while True:
            url = f"{base}/api/v1/tasks/{task_id}"
            body = httpx.get(url, headers=headers, timeout=5).json()
            if body["status"] == "FAILED" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert body["status"] == "FAILED", body
        assert "in charge_card" in body["error"]["details"]["traceback"], body


def kill_serve_under_load(stack: Stack, kills: int) -> None:
    """One serve and one worker under load (every fifth task's handler raises); serve
    killed ``kills`` times and restarted; then every acknowledged task must end, once,
    and each failed one keep its handler's traceback."""
    base = stack.serve("serve")
    stack.worker("w1")
    load = Load([base], stack.key, rate=50, failing_every=5)
    load.start()
    for _ in range(kills):
        time.sleep(2.0)
        stack.kill("serve")
        stack.serve("serve")
    time.sleep(2.0)
    load.stop()
    check(stack, load, settle(stack.database_url, load.acknowledged, SETTLE_S))
    check_tracebacks(stack, base, load.failing)


def test_serve_killed_mid_load_and_restarted_loses_no_task(stack: Stack) -> None:
    kill_serve_under_load(stack, kills=2)  # twice, as an operator's bad day would


def test_on_the_plain_library_paths_a_killed_serve_loses_no_task(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    """Every shortcut below a library's public API off (TASKEXEC_FAST_*: docs/operations.md):
    the promise holds on the plain paths too."""
    plain = {f"TASKEXEC_FAST_{name.upper()}": "off" for name in FastPaths.names()}
    stack = Stack(database_url, nats_server.url, tmp_path, env=plain)
    try:
        kill_serve_under_load(stack, kills=1)
        serve_log = (stack.dir / "serve.log").read_text(errors="replace")
        assert serve_log.count("fast paths off, the plain library paths instead: nats_wire") == 2
    finally:
        stack.stop_all()


def test_two_serve_replicas_and_two_workers_lose_no_task_and_run_each_once(
    pg_stack: Stack,
) -> None:
    bases = [pg_stack.serve("serve-a"), pg_stack.serve("serve-b")]
    pg_stack.worker("w1")
    pg_stack.worker("w2")
    load = Load(bases, pg_stack.key, rate=60)
    load.start()
    time.sleep(8.0)
    load.stop()

    outcome = settle(pg_stack.database_url, load.acknowledged, SETTLE_S)
    check(pg_stack, load, outcome)
    assert outcome.ran_twice == 0, outcome.summary()  # nobody died: every handler ran once
    relay_logs = (pg_stack.dir / "serve-a.log").read_text() + (
        pg_stack.dir / "serve-b.log"
    ).read_text()
    assert "Failed to record tracking" not in relay_logs
    assert relay_logs.count("relay: this process is the active one") == 1
    # Both replicas list the same tasks in the same order, with the same statuses.
    pages = [
        httpx.get(
            f"{base}/api/v1/tasks",
            params={"limit": 100, "page": 2},
            headers={"X-API-Key": pg_stack.key},
            timeout=10,
        ).json()
        for base in bases
    ]
    assert pages[0] == pages[1]
    assert pages[0]["pagination"]["totalItems"] >= len(load.acknowledged)
    assert len(pages[0]["items"]) == 100


def test_an_input_nats_cannot_carry_is_refused_and_the_next_task_completes(stack: Stack) -> None:
    base = stack.serve("serve")
    stack.worker("w1")
    headers = {"X-API-Key": stack.key}
    big = {"taskDefinitionId": "slow", "input": {"seconds": 0, "pad": "x" * 1_100_000}}
    refused = httpx.post(f"{base}/api/v1/tasks", json=big, headers=headers, timeout=10)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["details"]["field"] == "input"
    assert error["details"]["limit"] < 1_048_576  # from the server's real max payload

    small = {"taskDefinitionId": "slow", "input": {"seconds": 0}}
    created = httpx.post(f"{base}/api/v1/tasks", json=small, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    outcome = settle(stack.database_url, [created.json()["id"]], 60)
    assert outcome.statuses == {"COMPLETED": 1}, outcome.summary()
