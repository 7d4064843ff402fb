"""The served OpenAPI document says what the server does: status codes, headers, the
error envelope, enums, constraints, permissions, examples, ``Allow`` on every path.

Checked against the real app (SQLite; the contract does not depend on the database):
declared things are compared with real responses where a response can show them.
The schemathesis run (tests/integration/test_openapi_contract.py) probes the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar.testing import TestClient

from api.http.app import API_ROUTES, create_app
from api.http.openapi_texts import ERROR_EXAMPLES, REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from api.runtime import Runtime
from api.security.gate import HEALTH_PATHS
from api.settings import Settings
from domain.permissions import ALL_PERMISSIONS
from tests.security_support import new_key

TASKS = "/api/v1/tasks"
SUBMIT = REQUEST_EXAMPLES[(TASKS, "post")]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient[Any], Runtime]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    runtime = Runtime.open(Settings(database_url=f"sqlite:///{tmp}/t.db", var_dir=tmp))
    with TestClient(create_app(runtime, None)) as client:
        client.headers["X-API-Key"] = new_key(runtime)
        yield client, runtime
    runtime.close()


@pytest.fixture(scope="module")
def doc(app: tuple[TestClient[Any], Runtime]) -> dict[str, Any]:
    response = app[0].get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` that resolves the document's ``#/components/...``."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def schema_of(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path][method]["responses"][status]["content"][
        "application/json"
    ]["schema"]
    return schema


def test_allow_lists_every_method_of_every_path(app: tuple[TestClient[Any], Runtime]) -> None:
    client, _ = app
    documented: dict[str, set[str]] = {}
    for handler in API_ROUTES:
        for path in handler.paths:
            concrete = path.replace("{taskId:str}", "x").replace("{definitionId:str}", "x")
            documented.setdefault(concrete, {"OPTIONS"}).update(handler.http_methods)
    assert "/api/v1/tasks" in documented
    for path, methods in documented.items():
        options = client.options(path)
        assert options.status_code == 204, path
        assert set(options.headers["allow"].split(", ")) == methods, path
        refused = client.request("PATCH", path)
        assert refused.status_code == 405, path
        assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert set(refused.headers["allow"].split(", ")) == methods, path


def test_every_error_response_is_the_envelope_with_an_example(doc: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path in HEALTH_PATHS:
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == envelope, (path, method, status)
            assert media["example"] == ERROR_EXAMPLES[status]
    for example in ERROR_EXAMPLES.values():
        validator(doc, envelope).validate(example)


def test_every_example_validates_against_its_schema(doc: dict[str, Any]) -> None:
    for (path, method), example in REQUEST_EXAMPLES.items():
        body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["example"] == example
        validator(doc, body["schema"]).validate(example)
    for (path, method, status), example in RESPONSE_EXAMPLES.items():
        validator(doc, schema_of(doc, path, method, status)).validate(example)


def test_headers_statuses_and_permissions_are_declared(doc: dict[str, Any]) -> None:
    permissions = {handler.opt.get("permission") for handler in API_ROUTES} - {None}
    assert permissions and permissions <= ALL_PERMISSIONS
    for path, _method, operation in operations(doc):
        responses = operation["responses"]
        if path in HEALTH_PATHS:  # the probes: open, not counted; live cannot be 503
            assert set(responses) == ({"200"} if path == "/health/live" else {"200", "503"})
            assert "x-permission" not in operation
            assert set(responses["200"]["headers"]) == {"X-Request-ID"}
            continue
        assert operation["x-permission"] in permissions
        assert operation["x-permission"] in operation["description"]
        assert {"401", "403", "429", "503"} <= set(responses), path
        for status, response in responses.items():
            headers = set(response["headers"])
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= headers
            assert "X-Request-ID" in headers
            assert ("Retry-After" in headers) == (status in ("429", "503")), (path, status)
            assert ("WWW-Authenticate" in headers) == (status == "401")
    submit = doc["paths"][TASKS]["post"]["responses"]
    assert {"Location"} <= set(submit["201"]["headers"])
    assert {"Location", "Idempotent-Replayed"} <= set(submit["200"]["headers"])
    assert doc["paths"][f"{TASKS}/{{taskId}}"]["get"]["x-permission"] == "tasks:read"


def test_path_parameters_enums_and_constraints_match_validation(doc: dict[str, Any]) -> None:
    names = {
        parameter["name"]
        for _, _, operation in operations(doc)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert names == {"taskId", "definitionId"}
    schemas = doc["components"]["schemas"]
    assert schemas["TaskStatus"]["enum"] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMED_OUT",
    ]
    assert schemas["Priority"]["enum"] == ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    assert "``" not in schemas["Priority"]["description"]
    for name in ("TaskResponse", "TaskSummary"):
        assert schemas[name]["properties"]["status"] == {"$ref": "#/components/schemas/TaskStatus"}
        assert schemas[name]["properties"]["type"] == {"$ref": "#/components/schemas/TaskType"}
    for name in (
        "SubmitTaskRequest",
        "BulkSubmitItem",
        "BulkSubmitRequest",
        "ExecutionConfigIn",
        "RetryPolicyIn",
        "CancelTaskRequest",
        "RetryTaskRequest",
        "CompleteTaskRequest",
        "FailTaskRequest",
    ):
        assert schemas[name]["additionalProperties"] is False, name
    timeout = schemas["ExecutionConfigIn"]["properties"]["timeout"]["anyOf"][0]
    assert timeout["exclusiveMinimum"] == 0
    cancel = doc["paths"][f"{TASKS}/{{taskId}}/cancel"]["post"]["requestBody"]
    assert cancel["required"] is False
    retry = doc["paths"][f"{TASKS}/{{taskId}}/retry"]["post"]
    assert retry["requestBody"]["required"] is False  # the reason is optional
    assert retry["x-permission"] == "tasks:retry"
    assert retry["operationId"] == "retryTask"
    assert {"200", "400", "404", "409"} <= set(retry["responses"])
    error_type = next(
        p for p in doc["paths"][TASKS]["get"]["parameters"] if p["name"] == "errorType"
    )
    schema = error_type["schema"]
    assert (error_type["in"], schema["type"], schema["minLength"], schema["maxLength"]) == (
        "query",
        "string",
        1,
        256,
    )
    assert "Beyond the spec" in error_type.get("description", schema.get("description"))
    assert "400" not in doc["paths"][f"{TASKS}/{{taskId}}"]["get"]["responses"]


def test_real_responses_carry_what_the_document_declares(
    app: tuple[TestClient[Any], Runtime], doc: dict[str, Any]
) -> None:
    client, _ = app
    created = client.post(TASKS, json=SUBMIT, headers={"Idempotency-Key": "doc-1"})
    assert created.status_code == 201, created.text
    replayed = client.post(TASKS, json=SUBMIT, headers={"Idempotency-Key": "doc-1"})
    assert replayed.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    task_path = created.headers["location"]
    for response, (path, method, status) in (
        (created, (TASKS, "post", "201")),
        (replayed, (TASKS, "post", "200")),
        (client.get(task_path), (f"{TASKS}/{{taskId}}", "get", "200")),
        (client.get(TASKS), (TASKS, "get", "200")),
        (client.get(f"{TASKS}/definitions"), (f"{TASKS}/definitions", "get", "200")),
        (client.get(f"{TASKS}/nope"), (f"{TASKS}/{{taskId}}", "get", "404")),
        (client.get(TASKS, params={"page": 0}), (TASKS, "get", "400")),
        (client.get(TASKS, headers={"X-API-Key": "wrong"}), (TASKS, "get", "401")),
    ):
        assert response.status_code == int(status), response.text
        validator(doc, schema_of(doc, path, method, status)).validate(response.json())
        declared = doc["paths"][path][method]["responses"][status]["headers"]
        assert {name.lower() for name in declared} <= set(response.headers), (path, status)


def test_error_details_are_always_an_object(app: tuple[TestClient[Any], Runtime]) -> None:
    client, _ = app
    query = client.get(TASKS, params={"page": 0, "limit": 1000})
    body = client.post(TASKS, json={**SUBMIT, "priority": "URGENT"})
    for response in (query, body):
        details = response.json()["error"]["details"]
        assert isinstance(details, dict), details
        assert details["field"] == details["violations"][0]["field"]
        assert details["issue"]
    assert {v["field"] for v in query.json()["error"]["details"]["violations"]} >= {"page"}
