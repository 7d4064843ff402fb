"""The ApiKey aggregate and the pure helpers around keys, expiries and idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from api.cli.apikey import UsageError, parse_expiry, parse_permissions
from commands.idempotency import fingerprint, task_id_for, valid_key
from commands.messages import SubmitTask
from domain.apikey import ApiKey, ApiKeyAlreadyRevoked
from domain.errors import InvalidValue
from domain.permissions import ALL_PERMISSIONS, Permission
from domain.values import Actor, Priority, RetryOverrides

AT = datetime(2030, 1, 1, tzinfo=UTC)
OP = Actor(id="op@host", kind="operator")


def create(**overrides: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "aggregate_id": uuid4(),
        "key_id": "0123456789abcdef",
        "name": "svc",
        "secret_hash": "a" * 64,
        "permissions": ["tasks:read", "tasks:read", "tasks:execute"],
        "expires_at": None,
        "at": AT,
        "actor": OP,
    }
    fields.update(overrides)
    return ApiKey.create(**fields)


def test_a_new_key_is_active_and_records_who_created_it() -> None:
    key = create(expires_at=AT + timedelta(days=1))
    assert key.permissions == {"tasks:read", "tasks:execute"}
    assert key.created_by == OP.as_dict()
    assert key.status(AT) == "active"
    assert key.status(AT + timedelta(days=1)) == "expired"
    [event] = key.collect_events()
    assert isinstance(event, ApiKey.Created)
    assert event.permissions == ["tasks:execute", "tasks:read"]
    assert event.expires_at == "2030-01-02T00:00:00+00:00"


def test_revocation_is_an_event_with_its_actor_and_happens_once() -> None:
    key = create()
    other = Actor(id="sec@host", kind="operator")
    key.revoke(at=AT + timedelta(hours=1), actor=other)
    assert key.status(AT + timedelta(hours=1)) == "revoked"
    assert key.revoked_by == other.as_dict()
    with pytest.raises(ApiKeyAlreadyRevoked):
        key.revoke(at=AT + timedelta(hours=2), actor=other)
    assert [type(e) for e in key.collect_events()] == [ApiKey.Created, ApiKey.Revoked]


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "tab\there"},
        {"permissions": []},
        {"permissions": ["tasks:read", "tasks:everything"]},
        {"secret_hash": "not-a-hash"},
        {"expires_at": AT},
        {"expires_at": datetime(2031, 1, 1)},  # no time zone
    ],
)
def test_invalid_keys_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        create(**overrides)


def test_topics_are_pinned() -> None:
    assert ApiKey.TOPIC == "taskexec.apikey.v1"
    assert ApiKey.Created.TOPIC == "taskexec.apikey.created.v1"
    assert ApiKey.Revoked.TOPIC == "taskexec.apikey.revoked.v1"


def test_the_permission_catalogue() -> None:
    assert {
        "tasks:execute",
        "tasks:read",
        "tasks:cancel",
        "tasks:list",
        "tasks:definitions:list",
        "tasks:definitions:read",
        "tasks:complete",
        "tasks:audit",
        "tasks:retry",
        "metrics:read",
    } == ALL_PERMISSIONS
    assert Permission("tasks:read") is Permission.TASKS_READ


NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", NOW + timedelta(days=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30m", NOW + timedelta(minutes=30)),
        ("2w", NOW + timedelta(weeks=2)),
        ("45s", NOW + timedelta(seconds=45)),
        ("P30D", NOW + timedelta(days=30)),
        ("PT1H30M", NOW + timedelta(hours=1, minutes=30)),
        ("P1W2DT3H", NOW + timedelta(weeks=1, days=2, hours=3)),
        ("2031-01-31", datetime(2031, 1, 31, tzinfo=UTC)),
        ("2031-01-31T10:00:00Z", datetime(2031, 1, 31, 10, tzinfo=UTC)),
        ("2031-01-31T10:00:00+02:00", datetime(2031, 1, 31, 8, tzinfo=UTC)),
        ("2031-01-31T10:00:00", datetime(2031, 1, 31, 10, tzinfo=UTC)),
    ],
)
def test_expiry_forms(text: str, expected: datetime) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "10y", "-5d", "yesterday", "2020-01-01", "0s"])
def test_bad_expiries(text: str) -> None:
    with pytest.raises(UsageError):
        parse_expiry(text, NOW)


def test_permission_lists() -> None:
    assert parse_permissions("tasks:read, tasks:execute,tasks:read") == [
        "tasks:execute",
        "tasks:read",
    ]
    assert parse_permissions("all") == sorted(ALL_PERMISSIONS)
    for bad in ("", ",", "tasks:reed"):
        with pytest.raises(UsageError):
            parse_permissions(bad)


def cmd(actor: Actor = OP, **overrides: Any) -> SubmitTask:
    fields: dict[str, Any] = {"definition_id": "d", "input": {"a": 1, "b": [1, 2]}, "actor": actor}
    fields.update(overrides)
    return SubmitTask(**fields)


def test_fingerprints_cover_the_request_and_nothing_else() -> None:
    base = fingerprint(cmd())
    assert fingerprint(cmd(input={"b": [1, 2], "a": 1})) == base  # key order
    assert fingerprint(cmd(actor=Actor("someone", "jwt"))) == base  # the id carries the caller
    assert fingerprint(cmd(idempotency_key="k")) == base
    for change in (
        {"input": {"a": 2, "b": [1, 2]}},
        {"input": {"a": 1, "b": [2, 1]}},
        {"definition_id": "e"},
        {"workflow_instance_id": "wf"},
        {"priority": Priority.HIGH},
        {"timeout_ms": 5},
        {"retry_policy": RetryOverrides(1, 2, 3.0)},
    ):
        assert fingerprint(cmd(**change)) != base, change


def test_task_ids_are_stable_per_caller_and_key() -> None:
    alice, bob = Actor("alice", "jwt"), Actor("alice", "apikey")
    assert task_id_for(cmd(alice), "k") == task_id_for(cmd(alice, input={}), "k")
    assert task_id_for(cmd(alice), "k") != task_id_for(cmd(alice), "l")
    assert task_id_for(cmd(alice), "k") != task_id_for(cmd(bob), "k")


@pytest.mark.parametrize(
    ("key", "ok"),
    [("a", True), ("x" * 255, True), ("x" * 256, False), ("", False), ("a b", False), ("é", False)],
)
def test_idempotency_keys(key: str, ok: bool) -> None:
    assert valid_key(key) is ok
