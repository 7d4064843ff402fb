"""A definition's resourceRequirements and securityContext, checked when it is loaded
(domain/resources.py): Kubernetes quantities, security levels, and the one rule that
reconciles ``timeoutSeconds`` with a task's timeout (the lower wins)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.definition import TaskDefinition
from domain.errors import InvalidValue
from domain.resources import Resources, parse_resources
from domain.task_rules import from_definition

WHERE = "executionConfig.resourceRequirements"


def definition(**execution: Any) -> dict[str, Any]:
    return {
        "id": "sized",
        "name": "Sized",
        "type": "AUTOMATED",
        "version": "1",
        "timeout": 60_000,
        "executionConfig": {"handler": "pkg.mod:fn", **execution},
    }


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("128Mi", 128 * 2**20),
        ("1Gi", 2**30),
        ("500M", 500_000_000),
        ("1.5Gi", 3 * 2**29),
        ("129e6", 129_000_000),
        ("1E3", 1000),
        ("134217728", 134_217_728),
        (134217728, 134_217_728),
        ("2k", 2000),
        ("1Ki", 1024),
        (" 64Mi ", 64 * 2**20),
    ],
)
def test_memory_quantities_are_read_as_kubernetes_does(memory: Any, expected: int) -> None:
    assert parse_resources({"resourceRequirements": {"memory": memory}}).memory_bytes == expected


@pytest.mark.parametrize(
    ("cpu", "millis"), [("0.1", 100), ("1", 1000), ("250m", 250), (2, 2000), ("1.5", 1500)]
)
def test_cpu_quantities_are_millicores(cpu: Any, millis: int) -> None:
    assert parse_resources({"resourceRequirements": {"cpu": cpu}}).millicpu == millis


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"memory": "128MB"}, "memory"),
        ({"memory": "128mi"}, "memory"),
        ({"memory": "lots"}, "memory"),
        ({"memory": "-1Gi"}, "memory"),
        ({"memory": "0"}, "memory"),
        ({"memory": "500m"}, "memory"),
        ({"memory": True}, "memory"),
        ({"memory": ["1Gi"]}, "memory"),
        ({"cpu": "0.0001"}, "cpu"),
        ({"cpu": "0.5m"}, "cpu"),
        ({"cpu": "1Gi"}, "cpu"),
        ({"cpu": "0"}, "cpu"),
        ({"cpu": "two"}, "cpu"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": 1.5}, "timeoutSeconds"),
        ({"timeoutSeconds": "60"}, "timeoutSeconds"),
        ({"timeoutSeconds": True}, "timeoutSeconds"),
        ({"memroy": "1Gi"}, "memroy"),
    ],
)
def test_a_bad_requirement_is_refused_at_load_naming_the_field(
    requirements: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        TaskDefinition.from_document(definition(resourceRequirements=requirements))
    assert str(refused.value).startswith(f"sized: {WHERE}.{field}")


@pytest.mark.parametrize(
    "context", [{"securityLevel": "EXTREME"}, {"securityLevel": "low"}, "HIGH"]
)
def test_an_unknown_security_level_is_refused(context: Any) -> None:
    with pytest.raises(InvalidValue, match=r"executionConfig\.securityContext"):
        TaskDefinition.from_document(definition(securityContext=context))


@pytest.mark.parametrize("level", ["LOW", "MEDIUM", "HIGH"])
def test_the_three_levels_load(level: str) -> None:
    loaded = TaskDefinition.from_document(definition(securityContext={"securityLevel": level}))
    assert loaded.execution_config["securityContext"] == {"securityLevel": level}


def test_the_spec_s_example_loads_and_its_timeout_seconds_caps_the_timeout() -> None:
    example = {"cpu": "0.1", "memory": "128Mi", "timeoutSeconds": 30}
    loaded = TaskDefinition.from_document(
        definition(executor="standard-executor", resourceRequirements=example)
    )
    assert loaded.resources == Resources(millicpu=100, memory_bytes=128 * 2**20, timeout_ms=30_000)
    assert loaded.timeout_ms == 60_000  # as registered; tasks get the lower of the two
    assert from_definition(loaded, None, None)["timeout_ms"] == 30_000
    assert from_definition(loaded, 10_000, None)["timeout_ms"] == 10_000  # a task's own, lower
    assert from_definition(loaded, 90_000, None)["timeout_ms"] == 30_000  # higher: capped


def test_without_timeout_seconds_the_task_s_timeout_stands() -> None:
    loaded = TaskDefinition.from_document(definition(resourceRequirements={"memory": "1Gi"}))
    assert from_definition(loaded, None, None)["timeout_ms"] == 60_000
    assert from_definition(loaded, 90_000, None)["timeout_ms"] == 90_000


@pytest.mark.parametrize(
    ("allow_env", "fragment"),
    [
        ("API_TOKEN", "must be a list"),
        ([1], "is not an environment variable name"),
        (["API-TOKEN"], "is not an environment variable name"),
        ([""], "is not an environment variable name"),
        (["TASKEXEC_JWT_SECRET"], "the worker's own setting"),
        (["taskexec_database_url"], "the worker's own setting"),
    ],
)
def test_a_bad_allow_env_is_refused_at_load_naming_the_field(allow_env: Any, fragment: str) -> None:
    context = {"securityLevel": "HIGH", "allowEnv": allow_env}
    with pytest.raises(InvalidValue) as refused:
        TaskDefinition.from_document(definition(securityContext=context))
    assert str(refused.value).startswith("sized: executionConfig.securityContext.allowEnv")
    assert fragment in str(refused.value)


def test_what_a_worker_needs_goes_with_each_task() -> None:
    loaded = TaskDefinition.from_document(
        definition(
            resourceRequirements={"cpu": "250m", "memory": "1Gi"},
            securityContext={"securityLevel": "HIGH", "allowEnv": ["API_TOKEN", "API_TOKEN"]},
        )
    )
    execution = from_definition(loaded, None, None)["execution"]
    assert execution == {
        "handler": loaded.handler,
        "cpu": 250,
        "memory": 2**30,
        "securityLevel": "HIGH",
        "allowEnv": ["API_TOKEN"],
    }


def test_a_task_of_a_definition_without_them_carries_none() -> None:
    loaded = TaskDefinition.from_document(definition())
    assert set(from_definition(loaded, None, None)["execution"]) == {"handler"}
