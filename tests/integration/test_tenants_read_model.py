"""Tenants beyond the requests (SQLite and PostgreSQL): a read model rebuilt from the events
keeps every task's tenant and each tenant's totals, ``taskexec verify`` finds the rows
equal to the replayed tasks (and a tenant's broken counter), ``taskexec apikey create
--tenant`` makes a key whose principal sees only its tenant's tasks, and every tenant list
walks an index that leads with the tenant."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from api.bootstrap import read_models
from api.settings import Settings
from projections.rebuild import Rebuilder
from projections.sql import reads
from projections.task_filters import TaskFilters
from tests.conftest import taskexec
from tests.security_support import TASKS, api_client, new_key
from tests.tenant_support import ORDER, REFUND, Tenants, tenants


def snapshot(world: Tenants) -> dict[str, Any]:
    """What each principal lists: every page, and the totals, of three of its lists."""
    seen: dict[str, Any] = {}
    for name in ("acme", "globex", "everyone"):
        who = getattr(world, name)
        seen[name] = [world.listed(who, limit=2), world.listed(who, type="MANUAL")]
        seen[name].append(world.listed(who, status="PENDING", type="AUTOMATED"))
    return seen


def tenant_of_rows(world: Tenants, generation: int) -> dict[str, str | None]:
    with world.runtime.runner._db.read() as cur:
        rows = cur.execute(f"SELECT id, tenant FROM task_view_g{generation}").fetchall()
    return {row["id"]: row["tenant"] for row in rows}


def test_a_rebuilt_read_model_keeps_the_tenants(database_url: str, tmp_path: Path) -> None:
    with tenants(database_url, tmp_path) as world:
        for who, bodies in (
            (world.acme, [ORDER, ORDER, REFUND]),
            (world.globex, [ORDER, REFUND]),
            (world.everyone, [ORDER]),
        ):
            for body in bodies:
                world.submit(who, body)
        cancelled = world.submit(world.acme, ORDER)
        assert world.client.post(f"{TASKS}/{cancelled}/cancel", headers=world.acme).is_success
        before, tenants_before = snapshot(world), tenant_of_rows(world, 1)
        assert sorted(t for t in tenants_before.values() if t) == ["acme"] * 4 + ["globex"] * 2

        service = world.runtime.service
        result = Rebuilder(
            service.read_log,
            lambda: service.recorder.max_notification_id() or 0,
            read_models(),
            world.runtime.runner._db,
        ).rebuild(drop_after=0)
        assert result.new_generation == 2
        assert tenant_of_rows(world, 2) == tenants_before
        assert snapshot(world) == before  # the same pages and totals, from the new tables
        assert before["acme"][0][1] == 4 and before["everyone"][0][1] == 7

        verified = taskexec(database_url, tmp_path, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # A tenant's counter that no longer agrees with its rows is found.
        with world.runtime.runner._db.transaction() as cur:
            cur.execute("UPDATE task_tenant_counts_g2 SET n = n + 2 WHERE tenant = 'globex'")
        broken = taskexec(database_url, tmp_path, "verify")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        found = broken.stdout + broken.stderr
        assert (
            "task_tenant_counts" in found and "globex/PENDING/AUTOMATED: 3 counted, 1 rows" in found
        )


def test_the_cli_makes_a_tenants_key(database_url: str, tmp_path: Path) -> None:
    made = taskexec(
        database_url,
        tmp_path,
        *("apikey", "create", "--name", "acme-orders", "--permissions", "all"),
        *("--tenant", "acme"),
    )
    assert made.returncode == 0, made.stderr
    assert "tenant acme" in made.stderr
    key = made.stdout.strip()
    listed = taskexec(database_url, tmp_path, "apikey", "list", "--json")
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["name"], entry["tenant"]) == ("acme-orders", "acme")
    table = taskexec(database_url, tmp_path, "apikey", "list").stdout.splitlines()
    assert table[0].split()[-2:] == ["TENANT", "PERMISSIONS"]
    assert " acme " in table[1]

    for bad in ("", "two words", "-leading-dash", "x" * 101):
        refused = taskexec(
            database_url, tmp_path, "apikey", "create", "--name", "x", "--permissions", "all",
            f"--tenant={bad}",
        )  # fmt: skip
        assert (refused.returncode, refused.stdout) == (2, ""), bad
        assert "--tenant" in refused.stderr and "letters, digits" in refused.stderr

    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as (client, runtime):
        everyone = {"X-API-Key": new_key(runtime)}
        theirs = client.post(TASKS, json=ORDER, headers=everyone).json()["id"]
        mine = client.post(TASKS, json=ORDER, headers={"X-API-Key": key}).json()["id"]
        assert client.get(f"{TASKS}/{theirs}", headers={"X-API-Key": key}).status_code == 404
        assert client.get(f"{TASKS}/{mine}", headers=everyone).status_code == 200
        page = client.get(TASKS, headers={"X-API-Key": key}).json()
        assert [item["id"] for item in page["items"]] == [mine]
        assert page["pagination"]["totalItems"] == 1


LISTS = [  # a tenant's list filters -> the index its page walks
    ({}, "created"),
    ({"status": "PENDING"}, "status"),
    ({"task_type": "MANUAL"}, "type"),
    ({"status": "PENDING", "task_type": "MANUAL"}, "status|type"),
    ({"workflow_instance_id": "wf-1"}, "workflow"),
    ({"error_type": "TIMEOUT", "status": "FAILED"}, "error_type"),
]


def test_a_tenants_list_walks_its_tenant_index(database_url: str, tmp_path: Path) -> None:
    """Each of a tenant's lists can be read from an index that leads with the tenant (a
    partial one: the query's ``tenant = ?`` must imply its ``tenant IS NOT NULL``), in
    the order asked for: no sort. On PostgreSQL, with sequential scans and sorts priced
    out, as a handful of rows would otherwise be read whole; which index the planner
    prefers at scale is docs/read-side.md's concern."""
    with tenants(database_url, tmp_path) as world:
        for _ in range(5):
            world.submit(world.acme, ORDER)
            world.submit(world.globex, REFUND)
        for given, lead in LISTS:
            filters = TaskFilters.of(
                given.get("status"),
                given.get("task_type"),
                given.get("workflow_instance_id"),
                given.get("error_type"),
                "acme",
            )
            with world.runtime.runner._db.transaction() as cur:
                explain = "EXPLAIN " if cur.postgres else "EXPLAIN QUERY PLAN "
                if cur.postgres:
                    cur.execute("SET LOCAL enable_seqscan = off")
                    cur.execute("SET LOCAL enable_sort = off")
                where, params, order = filters.page(cur)
                page = reads.task_page(1, where, order)
                plan = " ".join(
                    str(value)
                    for row in cur.execute(explain + page, [*params, 20, 0]).fetchall()
                    for value in row.values()
                )
                count, count_params = filters.count(1)
                counted = " ".join(
                    str(value)
                    for row in cur.execute(explain + count, count_params).fetchall()
                    for value in row.values()
                )
            assert re.search(rf"ix_task_tenant_({lead})_g1", plan), (given, plan)
            assert "Sort" not in plan and "TEMP B-TREE" not in plan, (given, plan)
            if "workflow_instance_id" in given or "error_type" in given:
                assert re.search(rf"ix_task_tenant_({lead})_g1", counted), (given, counted)
            else:  # a sum over the tenant's counters
                assert "task_tenant_counts_g1" in counted, (given, counted)
