"""Two tenants submitting while ``taskexec serve`` is killed and restarted: every
acknowledged task ends once, stays its tenant's (its row, its list, its totals), is never
shown to the other tenant, and ``taskexec verify`` (the tenants' counters included) agrees.

Real processes (serve, a worker, nats-server, the database), loopback only, bounded.
"""

from __future__ import annotations

import time

import httpx

from tests.faults.stack import Load, Stack, settle
from tests.faults.test_serve_faults import SETTLE_S, check


def listed(base: str, key: str) -> tuple[set[str], int]:
    """Every task id of the key's list (every page) and its totalItems."""
    ids: set[str] = set()
    page, total = 1, 0
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as client:
        while True:
            body = client.get("/api/v1/tasks", params={"limit": 100, "page": page}).json()
            total = body["pagination"]["totalItems"]
            if not body["items"]:
                return ids, total
            ids |= {item["id"] for item in body["items"]}
            page += 1


def test_two_tenants_through_a_killed_serve_keep_their_own_tasks(stack: Stack) -> None:
    keys = {
        tenant: stack.cli(
            "apikey", "create", "--name", tenant, "--permissions", "all", "--tenant", tenant
        ).strip()
        for tenant in ("acme", "globex")
    }
    base = stack.serve("serve")
    stack.worker("w1")
    loads = {tenant: Load([base], key, rate=25) for tenant, key in keys.items()}
    for load in loads.values():
        load.start()
    for _ in range(2):
        time.sleep(2.0)
        stack.kill("serve")
        stack.serve("serve")
    time.sleep(2.0)
    for load in loads.values():
        load.stop()

    everything = Load([base], stack.key)  # only to check the union, never started
    everything.acknowledged = [i for load in loads.values() for i in load.acknowledged]
    everything.refused = sum(load.refused for load in loads.values())
    outcome = settle(stack.database_url, everything.acknowledged, SETTLE_S)
    check(stack, everything, outcome)  # each ends once; verify exits 0

    seen = {tenant: listed(base, key) for tenant, key in keys.items()}
    for tenant, load in loads.items():
        ids, total = seen[tenant]
        assert load.acknowledged and set(load.acknowledged) <= ids, tenant
        assert total == len(ids), tenant  # its counters agree with its rows
    assert not seen["acme"][0] & seen["globex"][0]
    # A request cut by the kill may have been recorded unanswered: it is still its tenant's.
    with httpx.Client(base_url=base, headers={"X-API-Key": stack.key}, timeout=10) as client:
        for tenant, (ids, _) in seen.items():
            for task_id in ids:
                assert client.get(f"/api/v1/tasks/{task_id}").json()["tenant"] == tenant
        other = next(iter(seen["globex"][0]))
        hidden = client.get(f"/api/v1/tasks/{other}", headers={"X-API-Key": keys["acme"]})
        assert hidden.status_code == 404, hidden.text
