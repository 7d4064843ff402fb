"""A client generated from the served OpenAPI document builds cleanly and parses real answers.

openapi-python-client (a dev dependency) generates a package from the live service's
``/schema/openapi.json`` (tests/live_service.py), and must print no warning: each
warning is a part of the document it could not turn into code (an operation or a
response left out). The package is then imported and used against that same service:
submit, get, list tasks, list and get definitions, cancel, history, and a 404. Every
parsed answer must be the documented model with typed fields: status, type and
priority as enums, no field the document does not declare (``additional_properties``
of a declared model), and an error as the error envelope.

The operations are found by their ``operationId`` and first tag, as the generator names
modules, so renaming them in the document does not break this test.
"""

from __future__ import annotations

import enum
import importlib
import os
import re
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import httpx
import pytest
from openapi_python_client.strings import PythonIdentifier

from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from tests.live_service import LiveService, database_for, live_service

TASKS = "/api/v1/tasks"


@dataclass
class Generated:
    """The generated package of one service's document, and the generator's output."""

    service: LiveService
    document: dict[str, Any]
    package: str
    output: str
    returncode: int

    def operation(self, method: str, path: str) -> dict[str, Any]:
        """The document's operation at ``path`` (``{}`` matches any path parameter)."""
        for key, item in self.document["paths"].items():
            if re.sub(r"\{[^}]+\}", "{}", key) == path and method in item:
                found: dict[str, Any] = item[method]
                return found
        raise AssertionError(f"the document has no {method.upper()} {path}")

    def endpoint(self, method: str, path: str) -> ModuleType:
        """The generated module of an operation: ``api/<first tag>/<operationId>.py``."""
        operation = self.operation(method, path)
        assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
        tag = PythonIdentifier((operation.get("tags") or ["default"])[0], "tag")
        name = PythonIdentifier(operation["operationId"], "field_")
        return importlib.import_module(f"{self.package}.api.{tag}.{name}")

    def model_name(self, method: str, path: str, status: str) -> str:
        """The component a response refers to (``#/components/schemas/<name>``)."""
        content = self.operation(method, path)["responses"][status]["content"]
        ref: str = content["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def generated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Generated]:
    workdir = tmp_path_factory.mktemp(f"client-{request.param}")
    with database_for(request.param, request, workdir) as url, live_service(url, workdir) as svc:
        document_file = workdir / "openapi.json"
        response = httpx.get(svc.schema_url, timeout=10)
        assert response.status_code == 200, response.text
        document_file.write_bytes(response.content)
        package = f"taskexec_client_{request.param}"
        bin_dir = str(Path(sys.executable).parent)  # its post-hooks run ruff from PATH
        finished = subprocess.run(
            [
                *(os.path.join(bin_dir, "openapi-python-client"), "generate"),
                *("--path", str(document_file)),
                *("--output-path", str(workdir / package)),
                *("--meta", "none"),
            ],
            env={**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sys.path.insert(0, str(workdir))
        try:
            yield Generated(
                svc,
                response.json(),
                package,
                finished.stdout + finished.stderr,
                finished.returncode,
            )
        finally:
            sys.path.remove(str(workdir))
            for name in [m for m in sys.modules if m.split(".")[0] == package]:
                del sys.modules[name]


def test_the_client_generates_without_warnings(generated: Generated) -> None:
    """A clean run prints one line, ``Generating <path>``; anything else is a warning (a
    part of the document left out), an error, or a skipped post-hook (ruff)."""
    assert generated.returncode == 0, generated.output
    said = [line for line in generated.output.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("Generating "), (
        f"openapi-python-client warned:\n{generated.output}"
    )


def client_for(generated: Generated, key: str) -> Any:
    package = importlib.import_module(generated.package)
    return package.AuthenticatedClient(
        base_url=generated.service.base,
        token=key,
        prefix="",
        auth_header_name="X-API-Key",
        raise_on_unexpected_status=True,
        timeout=httpx.Timeout(10),
    )


def body_type(function: Any) -> Any:
    """The model class of an endpoint function's ``body`` argument (optional or not)."""
    hint = typing.get_type_hints(function)["body"]
    models = [t for t in typing.get_args(hint) or (hint,) if attrs.has(t)]
    assert len(models) == 1, f"{function.__module__}: body is {hint}"
    return models[0]


def assert_enum(value: Any, expected: str, where: str) -> None:
    assert isinstance(value, enum.Enum), f"{where}: {value!r} is a plain {type(value).__name__}"
    assert value.value == expected, f"{where}: {value!r}"


def undeclared(value: Any, where: str = "") -> list[str]:
    """Fields a parsed answer had that its model does not declare (recursively).

    A model with declared fields keeps anything else in ``additional_properties``; a
    free-form object (``input``, ``data``) is a model with no declared field at all."""
    found: list[str] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += undeclared(item, f"{where}[{index}]")
    elif attrs.has(type(value)):
        declared = [f.name for f in attrs.fields(type(value)) if f.name != "additional_properties"]
        extra = getattr(value, "additional_properties", {})
        if declared and extra:
            found.append(f"{where or type(value).__name__}: {sorted(extra)}")
        for name in declared:
            found += undeclared(getattr(value, name), f"{where}.{name}")
    return found


def parsed(
    generated: Generated, response: Any, method: str, path: str, status: int, where: str
) -> Any:
    """The parsed answer, checked: the expected status, the documented model, no extras."""
    assert response.status_code == status, f"{where}: {response.status_code} {response.content!r}"
    model = generated.model_name(method, path, str(status))
    answer = response.parsed
    assert type(answer).__name__ == model, f"{where}: parsed as {type(answer).__name__}"
    assert not undeclared(answer), f"{where}: fields not in the document: {undeclared(answer)}"
    return answer


def test_the_client_parses_real_responses(generated: Generated) -> None:
    g = generated
    client = client_for(g, g.service.full_key)
    submit = g.endpoint("post", TASKS)
    get_task = g.endpoint("get", f"{TASKS}/{{}}")
    list_tasks = g.endpoint("get", TASKS)
    list_definitions = g.endpoint("get", f"{TASKS}/definitions")
    get_definition = g.endpoint("get", f"{TASKS}/definitions/{{}}")
    cancel = g.endpoint("post", f"{TASKS}/{{}}/cancel")
    history = g.endpoint("get", f"{TASKS}/{{}}/history")
    workflow = f"client-{uuid.uuid4().hex[:8]}"

    # Submit, then read it back until the worker has run it.
    body = body_type(submit.sync_detailed).from_dict(
        {
            "taskDefinitionId": "calculate-order-total",
            "workflowInstanceId": workflow,
            "priority": "HIGH",
            "input": EXAMPLE_INPUT,
        }
    )
    created = parsed(
        g, submit.sync_detailed(client=client, body=body), "post", TASKS, 201, "submit"
    )
    assert isinstance(created.id, uuid.UUID)  # declared format: uuid
    assert isinstance(created.created_at, datetime)  # declared format: date-time
    assert created.created_at.utcoffset() == timedelta(0)
    assert_enum(created.status, "PENDING", "submit: status")

    deadline = time.monotonic() + 30
    while True:
        response = get_task.sync_detailed(created.id, client=client)
        task = parsed(g, response, "get", f"{TASKS}/{{}}", 200, "get task")
        if getattr(task.status, "value", task.status) == "COMPLETED":
            break
        assert time.monotonic() < deadline, f"never COMPLETED: {response.content!r}"
        time.sleep(0.05)
    assert task.id == created.id
    assert task.task_definition_id == "calculate-order-total"
    assert task.workflow_instance_id == workflow
    assert_enum(task.status, "COMPLETED", "get task: status")
    assert_enum(task.type_, "AUTOMATED", "get task: type")
    assert_enum(task.priority, "HIGH", "get task: priority")
    assert task.input_.to_dict() == EXAMPLE_INPUT
    assert task.output == EXAMPLE_OUTPUT
    assert isinstance(task.attempts, int)
    assert isinstance(task.execution_metadata.duration, int)
    start, end = task.execution_metadata.start_time, task.execution_metadata.end_time
    assert isinstance(start, datetime) and isinstance(end, datetime) and start <= end

    # List tasks, filtered by the workflow.
    response = list_tasks.sync_detailed(client=client, workflow_instance_id=workflow)
    page = parsed(g, response, "get", TASKS, 200, "list tasks")
    assert [item.id for item in page.items] == [created.id]
    assert_enum(page.items[0].status, "COMPLETED", "list tasks: status")
    assert_enum(page.items[0].type_, "AUTOMATED", "list tasks: type")
    assert page.pagination.total_items == 1
    assert isinstance(page.pagination.total_pages, int)

    # The definitions, listed and one by one.
    response = list_definitions.sync_detailed(client=client)
    definitions = parsed(g, response, "get", f"{TASKS}/definitions", 200, "list definitions")
    by_id = {item.id: item for item in definitions.items}
    assert {"calculate-order-total", "approve-refund", "process-payment"} <= set(by_id)
    assert_enum(by_id["approve-refund"].type_, "MANUAL", "list definitions: type")
    response = get_definition.sync_detailed("process-payment", client=client)
    definition = parsed(g, response, "get", f"{TASKS}/definitions/{{}}", 200, "get definition")
    assert definition.id == "process-payment"
    assert_enum(definition.type_, "INTEGRATION", "get definition: type")
    assert "currency" in definition.input_schema.to_dict()["properties"]

    # Cancel a MANUAL task (it waits for a person), then read its history.
    manual = body_type(submit.sync_detailed).from_dict(
        {"taskDefinitionId": "approve-refund", "input": {"orderId": "ORD-9", "amount": 3}}
    )
    waiting = parsed(
        g, submit.sync_detailed(client=client, body=manual), "post", TASKS, 201, "submit"
    )
    cancel_body = body_type(cancel.sync_detailed).from_dict({"reason": "changed my mind"})
    response = cancel.sync_detailed(waiting.id, client=client, body=cancel_body)
    cancelled = parsed(g, response, "post", f"{TASKS}/{{}}/cancel", 200, "cancel")
    assert cancelled.id == waiting.id
    assert_enum(cancelled.status, "CANCELLED", "cancel: status")

    response = history.sync_detailed(waiting.id, client=client)
    events = parsed(g, response, "get", f"{TASKS}/{{}}/history", 200, "history")
    assert events.task_id == waiting.id
    assert len(events.events) >= 2
    assert [e.version for e in events.events] == list(range(1, len(events.events) + 1))
    assert_enum(events.events[0].status, "PENDING", "history: first status")
    assert_enum(events.events[-1].status, "CANCELLED", "history: last status")

    # An unknown task and an unknown definition: 404 in the error envelope.
    missing = str(uuid.uuid4())
    response = get_task.sync_detailed(missing, client=client)
    error = parsed(g, response, "get", f"{TASKS}/{{}}", 404, "get unknown task")
    assert error.error.code == "NOT_FOUND"
    assert missing in error.error.message
    response = get_definition.sync_detailed("no-such-definition", client=client)
    error = parsed(g, response, "get", f"{TASKS}/definitions/{{}}", 404, "unknown definition")
    assert error.error.code == "NOT_FOUND"
