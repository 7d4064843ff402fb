"""Tenants over HTTP on the real app (SQLite and PostgreSQL): two tenants (``acme`` by an
API key made with ``--tenant``, ``globex`` by JWTs with the tenant claim) and a principal
without a tenant. Every read and change of another tenant's task is the 404 of an unknown
id; lists, their filters, pages and totals are the tenant's own; the global principal sees
everything (docs/security.md, "Tenants")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security_support import TASKS, assert_unauthorized
from tests.tenant_support import ORDER, REFUND, Tenants, tenants, token

FAIL = {"error": {"type": "REJECTED", "message": "no"}}


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[Tenants]:
    with tenants(database_url, tmp_path) as made:
        yield made


def test_reads_lists_and_history_are_the_tenants_own(world: Tenants) -> None:
    shared = {"workflowInstanceId": "wf-shared"}
    acme = [world.submit(world.acme, ORDER) for _ in range(4)]
    acme += [world.submit(world.acme, {**ORDER, **shared}), world.submit(world.acme, REFUND)]
    globex = [world.submit(world.globex, ORDER), world.submit(world.globex, {**REFUND, **shared})]
    untenanted = world.submit(world.everyone, {**ORDER, **shared})

    # GET: one's own task; another tenant's, and a task without a tenant, are not found.
    assert world.client.get(f"{TASKS}/{acme[0]}", headers=world.acme).status_code == 200
    world.hidden(world.acme, "GET", TASKS + "/{}", globex[0])
    world.hidden(world.globex, "GET", TASKS + "/{}", acme[0])
    world.hidden(world.acme, "GET", TASKS + "/{}", untenanted)
    owners = {**dict.fromkeys(acme, "acme"), **dict.fromkeys(globex, "globex")}
    for task_id in [*acme, *globex, untenanted]:
        answer = world.client.get(f"{TASKS}/{task_id}", headers=world.everyone)
        assert answer.json()["tenant"] == owners.get(task_id), task_id  # null: none
    page = world.client.get(TASKS, params={"limit": 100}, headers=world.everyone).json()
    assert {item["id"]: item["tenant"] for item in page["items"]} == {
        **owners,
        untenanted: None,
    }

    # Lists: every page, and totalItems, the tenant's own (filtered in SQL, before paging).
    assert world.listed(world.acme, limit=4) == (acme[::-1], 6)
    assert world.listed(world.globex, limit=1) == (globex[::-1], 2)
    everything, total = world.listed(world.everyone, limit=3)
    assert (sorted(everything), total) == (sorted([*acme, *globex, untenanted]), 9)
    assert world.listed(world.acme, type="MANUAL") == ([acme[5]], 1)
    assert world.listed(world.acme, status="PENDING", type="AUTOMATED", limit=2) == (
        acme[4::-1],
        5,
    )
    assert world.listed(world.globex, status="COMPLETED") == ([], 0)
    assert world.listed(world.acme, workflowInstanceId="wf-shared") == ([acme[4]], 1)
    assert world.listed(world.globex, workflowInstanceId="wf-shared") == ([globex[1]], 1)
    assert world.listed(world.everyone, workflowInstanceId="wf-shared")[1] == 3
    for who, manual in ((world.acme, acme[5]), (world.globex, globex[1])):
        failed = world.client.post(f"{TASKS}/{manual}/fail", json=FAIL, headers=who)
        assert failed.status_code == 200, failed.text
    assert world.listed(world.acme, errorType="REJECTED") == ([acme[5]], 1)
    assert world.listed(world.globex, errorType="REJECTED", status="FAILED") == ([globex[1]], 1)
    assert world.listed(world.everyone, errorType="REJECTED")[1] == 2

    # History: one's own (its submitted event names the tenant); another's is not found.
    history = world.client.get(f"{TASKS}/{acme[0]}/history", headers=world.acme)
    assert history.status_code == 200, history.text
    assert history.json()["events"][0]["data"]["tenant"] == "acme"
    world.hidden(world.acme, "GET", TASKS + "/{}/history", globex[0])
    world.hidden(world.globex, "GET", TASKS + "/{}/history", untenanted)
    mine = world.client.get(f"{TASKS}/{untenanted}/history", headers=world.everyone).json()
    assert "tenant" not in mine["events"][0]["data"]  # absent without one
    assert world.client.get(f"{TASKS}/{globex[0]}/history", headers=world.everyone).is_success


def test_changes_to_another_tenants_task_are_not_found_and_record_nothing(
    world: Tenants,
) -> None:
    order, refund = world.submit(world.globex, ORDER), world.submit(world.globex, REFUND)
    cancelled = world.submit(world.globex, ORDER)
    assert world.client.post(f"{TASKS}/{cancelled}/cancel", headers=world.globex).is_success

    world.hidden(world.acme, "POST", TASKS + "/{}/cancel", order, {"reason": "mine now"})
    world.hidden(world.acme, "POST", TASKS + "/{}/retry", cancelled, {})
    world.hidden(world.acme, "POST", TASKS + "/{}/complete", refund, {"output": {"approved": True}})
    world.hidden(world.acme, "POST", TASKS + "/{}/fail", refund, FAIL)
    statuses = {
        task_id: world.client.get(f"{TASKS}/{task_id}", headers=world.globex).json()["status"]
        for task_id in (order, refund, cancelled)
    }
    assert statuses == {order: "PENDING", refund: "PENDING", cancelled: "CANCELLED"}
    for task_id, events in ((order, 1), (refund, 1), (cancelled, 2)):
        history = world.client.get(f"{TASKS}/{task_id}/history", headers=world.globex).json()
        assert len(history["events"]) == events  # nothing recorded by the refused calls

    # The owner, and the global principal, may.
    done = world.client.post(
        f"{TASKS}/{refund}/complete", json={"output": {"approved": True}}, headers=world.globex
    )
    assert done.json()["status"] == "COMPLETED", done.text
    retried = world.client.post(f"{TASKS}/{cancelled}/retry", json={}, headers=world.everyone)
    assert retried.json()["status"] == "PENDING", retried.text
    stopped = world.client.post(f"{TASKS}/{order}/cancel", headers=world.everyone)
    assert stopped.json()["status"] == "CANCELLED", stopped.text


def test_bulk_and_idempotent_replays_stay_in_their_tenant(world: Tenants) -> None:
    bulk = world.client.post(
        f"{TASKS}/bulk",
        json={"tasks": [ORDER, {**REFUND, "idempotencyKey": "refund-1"}]},
        headers=world.acme,
    )
    assert bulk.status_code == 200, bulk.text
    made = [result["task"]["id"] for result in bulk.json()["items"]]
    assert world.listed(world.acme) == (made[::-1], 2)
    for task_id in made:
        world.hidden(world.globex, "GET", TASKS + "/{}", task_id)

    # One Idempotency-Key in two tenants: two tasks, each replayed to its own tenant only.
    key = {"Idempotency-Key": "order-42"}
    first = world.submit(world.acme, ORDER, **key)
    other = world.submit(world.globex, ORDER, **key)
    assert first != other
    assert world.submit(world.acme, ORDER, **key) == first
    assert world.submit(world.globex, ORDER, **key) == other
    # One JWT subject with another tenant's claim is another caller: not bob@globex's task.
    elsewhere = world.submit(token("bob", "initech"), ORDER, **key)
    assert elsewhere not in (first, other)
    assert world.submit(token("bob", "globex"), ORDER, **key) == other
    # A bulk item's key is scoped the same way: acme's refund-1 is not globex's.
    again = world.client.post(
        f"{TASKS}/bulk",
        json={"tasks": [{**REFUND, "idempotencyKey": "refund-1"}]},
        headers=world.globex,
    ).json()["items"][0]
    assert (again["statusCode"], again["task"]["id"] != made[1]) == (201, True)
    replay = world.client.post(
        f"{TASKS}/bulk",
        json={"tasks": [{**REFUND, "idempotencyKey": "refund-1"}]},
        headers=world.acme,
    ).json()["items"][0]
    assert (replay["statusCode"], replay["task"]["id"]) == (200, made[1])


def test_principals_of_one_tenant_share_it_and_a_bad_claim_is_refused(world: Tenants) -> None:
    by_key = world.submit(world.acme, ORDER)
    by_token = world.submit(token("alice", "acme"), ORDER)
    assert world.listed(token("carol", "acme")) == ([by_token, by_key], 2)
    # Without the claim a token is a principal without a tenant, as before tenants.
    assert world.listed(token("dave"))[1] == 2
    for bad in ("", "two words", 42, ["acme"], "x" * 101):
        refused = world.client.get(TASKS, headers=token("eve", bad))
        assert "is not a tenant" in assert_unauthorized(refused), bad


def test_metrics_carry_no_tenant(world: Tenants) -> None:
    world.submit(world.acme, ORDER)
    world.submit(world.globex, ORDER)
    metrics = world.client.get("/metrics", headers=world.everyone)
    assert metrics.status_code == 200, metrics.text
    assert "taskexec_" in metrics.text
    assert "tenant" not in metrics.text and "acme" not in metrics.text
