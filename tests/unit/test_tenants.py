"""Tenants, the rule pieces (docs/security.md, "Tenants"): what a tenant's name is, who sees
which task, the events that record tenants (old ones load without), idempotency ids per
tenant, the commands' refusals of another tenant's task, and the JWT claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from eventsourcing.persistence import StoredEvent
from joserfc import jwt
from joserfc.jwk import OctKey

from api.security.principal import AuthFailure
from api.security.tokens import TokenVerifier
from commands import idempotency
from commands.apikeys import ApiKeyRecord
from commands.batch import change_task, decide
from commands.errors import NotFound, ValidationFailed
from commands.messages import CancelTask, FinishManually, RequeueTask, SubmitTask
from commands.public_events import public_data
from commands.task_changes import finish_manually
from domain.apikey import ApiKey
from domain.errors import InvalidValue
from domain.task import Task
from domain.tenancy import check_tenant, visible
from domain.values import Actor
from tests.unit.test_task_aggregate import T0, USER, make_definition, make_mapper

SECRET = "a-development-secret-of-at-least-32-bytes!"
NOW = 1_900_000_000


@pytest.mark.parametrize("name", ["acme", "Org-7", "tenant_1.eu:prod", "0", "a" * 100])
def test_a_tenant_is_a_plain_name(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", " acme", "a b", "-x", ".x", "a/b", "ä", "a" * 101, 7])
def test_anything_else_is_refused(name: Any) -> None:
    with pytest.raises(InvalidValue, match="letters, digits"):
        check_tenant(name)


def test_who_sees_which_task() -> None:
    assert visible("acme", "acme")
    assert not visible("acme", "globex")
    assert not visible(None, "acme")  # a task from before tenants: not a tenant's
    assert visible("acme", None) and visible(None, None)  # no tenant: every task


def submitted(tenant: str | None = None) -> Task:
    return Task.submit(
        task_id=uuid4(), at=T0, actor=USER, definition=make_definition(), input={}, tenant=tenant
    )


def test_a_task_keeps_its_tenant_through_the_store_and_an_older_event_has_none() -> None:
    mapper = make_mapper()
    [event] = submitted("acme").collect_events()
    stored = mapper.to_stored_event(event)
    again: Any = mapper.to_domain_event(stored)
    assert again.tenant == "acme" and again.mutate(None).tenant == "acme"
    assert public_data(again)["tenant"] == "acme"

    state = mapper.transcoder.decode(stored.state)
    del state["tenant"]  # as stored before tenants existed
    older = StoredEvent(
        stored.originator_id,
        stored.originator_version,
        stored.topic,
        mapper.transcoder.encode(state),
    )
    loaded: Any = mapper.to_domain_event(older)
    assert loaded.tenant is None and loaded.mutate(None).tenant is None
    assert "tenant" not in public_data(loaded)


def test_an_api_key_records_its_tenant_and_refuses_a_bad_one() -> None:
    fields: dict[str, Any] = {
        "key_id": "0123456789abcdef",
        "name": "orders",
        "secret_hash": "0" * 64,
        "permissions": ["tasks:read"],
        "expires_at": None,
        "at": T0,
        "actor": Actor("op@host", "operator"),
    }
    key = ApiKey.create(aggregate_id=uuid4(), tenant="acme", **fields)
    assert ApiKeyRecord.of(key).tenant == "acme"
    assert ApiKeyRecord.of(ApiKey.create(aggregate_id=uuid4(), **fields)).tenant is None
    with pytest.raises(InvalidValue, match="tenant"):
        ApiKey.create(aggregate_id=uuid4(), tenant="not a name", **fields)


def test_idempotency_ids_are_per_tenant_and_unchanged_without_one() -> None:
    actor = Actor("0123456789abcdef", "apikey")

    def task_id(tenant: str | None, who: Actor = actor) -> UUID:
        cmd = SubmitTask("calculate-order-total", {}, who, tenant=tenant)
        return idempotency.task_id_for(cmd, "order-42")

    # The ids keyed submits had before tenants, still.
    expected = uuid5(idempotency.IDEMPOTENCY_NAMESPACE, "apikey\x1f0123456789abcdef\x1forder-42")
    assert task_id(None) == expected
    ids = {task_id(None), task_id("acme"), task_id("globex")}
    assert len(ids) == 3
    assert task_id("acme") == task_id("acme")
    assert task_id("acme", Actor("bob", "jwt")) != task_id("globex", Actor("bob", "jwt"))


def no_new_task(cmd: SubmitTask, task_id: UUID, request_hash: str | None) -> Task:
    raise AssertionError("no task is made here")


def test_a_batch_does_not_find_another_tenants_task() -> None:
    task = submitted("acme")
    cmds: list[Any] = [
        CancelTask(task.id, USER, tenant="globex"),
        RequeueTask(task.id, USER, tenant="globex"),
        CancelTask(task.id, USER, tenant="acme"),
    ]
    at = T0 + timedelta(seconds=1)
    decision = decide(cmds, {task.id: task}, no_new_task, uuid4, lambda t, c: change_task(t, c, at))
    for index in (0, 1):
        refused = decision.answers[index]
        assert isinstance(refused, NotFound) and refused.details == {"field": "taskId"}
        assert refused.message == f"task {task.id} not found"
    assert decision.changed[2] is task and task.status.value == "CANCELLED"


def test_a_keyed_replay_never_crosses_a_tenant() -> None:
    cmd = SubmitTask("calculate-order-total", {}, USER, idempotency_key="k", tenant="acme")
    # An id that named another tenant's task (impossible by derivation): refused, unnamed.
    theirs = submitted("globex")
    found = {idempotency.task_id_for(cmd, "k"): theirs}
    decision = decide([cmd], found, no_new_task, uuid4, lambda t, c: None)
    refused = decision.answers[0]
    assert isinstance(refused, ValidationFailed)
    assert refused.details == {"field": "Idempotency-Key"}  # no task id named


class Store:
    def __init__(self, task: Task) -> None:
        self.task, self.saved = task, 0

    def load(self, task_id: UUID) -> Task:
        return self.task

    def save(self, *objs: Any, **kwargs: Any) -> list[Any]:
        self.saved += 1
        raise AssertionError("nothing is to be saved")


def test_a_manual_task_of_another_tenant_is_not_found() -> None:
    store = Store(submitted("acme"))
    cmd = FinishManually(store.task.id, USER, output={}, tenant="globex")
    with pytest.raises(NotFound, match="not found"):
        finish_manually(store, cmd, lambda: T0, lambda task, output: [])
    assert store.saved == 0


def bearer(**claims: Any) -> str:
    payload = {"sub": "u", "exp": NOW + 60, **claims}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()))


def verifier(claim: str | None = "org") -> TokenVerifier:
    return TokenVerifier(secret=SECRET, clock=lambda: NOW, tenant_claim=claim)


def test_the_tenant_claim_names_the_principals_tenant() -> None:
    assert verifier().verify(bearer(org="acme"), blocking=False).tenant == "acme"
    assert verifier().verify(bearer(), blocking=False).tenant is None  # no claim: global
    assert verifier().verify(bearer(org=None), blocking=False).tenant is None
    # Not configured: the claim means nothing here.
    assert verifier(None).verify(bearer(org="acme"), blocking=False).tenant is None
    for bad in ("", "a b", 42, ["acme"], {"id": "acme"}, True):
        with pytest.raises(AuthFailure, match="token claim 'org' is not a tenant"):
            verifier().verify(bearer(org=bad), blocking=False)
