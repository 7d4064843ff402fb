"""``taskexec serve`` killed mid-load, and several replicas at once: no acknowledged task
is lost or stranded, each ends exactly once, and ``taskexec verify`` agrees.

Real processes (serve, workers, nats-server, the database), loopback only, bounded.
Each test prints what became of the tasks (see tests/faults/stack.py's ``Outcome``).
"""

from __future__ import annotations

import time

import httpx

from tests.faults.stack import Load, Outcome, Stack, settle

SETTLE_S = 120.0  # reports held by a killed serve come back after the results ack wait


def check(stack: Stack, load: Load, outcome: Outcome) -> None:
    print(f"\n{outcome.summary()}; refused while down: {load.refused}")
    assert load.acknowledged, stack.logs()
    assert outcome.stuck == [], f"{outcome.summary()}\n{stack.logs()}"
    assert set(outcome.terminal_events) == {1}, outcome.summary()  # exactly one end each
    stack.cli("verify")  # exit 0: chains, replays and read models agree (asserted in cli)


def test_serve_killed_mid_load_and_restarted_loses_no_task(stack: Stack) -> None:
    base = stack.serve("serve")
    stack.worker("w1")
    load = Load([base], stack.key, rate=50)
    load.start()
    for _ in range(2):  # twice, as an operator's bad day would
        time.sleep(2.0)
        stack.kill("serve")
        stack.serve("serve")
    time.sleep(2.0)
    load.stop()

    check(stack, load, settle(stack.database_url, load.acknowledged, SETTLE_S))


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
