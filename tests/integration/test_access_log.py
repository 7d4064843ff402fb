"""The access log and the request id (api/http/access_log.py) on the real app: one line
per request, the gate's own answers included, with its fields; the request id in and out;
never a key, a token, a query string or a body in anything logged."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.runtime import Runtime
from api.settings import Settings
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import api_client, new_key
from workers.logs import ContextFilter, JsonFormatter

TASKS = "/api/v1/tasks"
HEX32 = re.compile(r"[0-9a-f]{32}")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJlLXRoYXQtaXMtd3Jvbmc"


class Logged:
    """Everything any logger emitted (DEBUG up), as the JSON format writes it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def access(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.text.splitlines()]
        return [line for line in lines if line["logger"] == "taskexec.access"]


@pytest.fixture
def logged() -> Iterator[Logged]:
    logs = Logged()
    handler = logging.StreamHandler(logs.stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield logs
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'access.db'}", var_dir=tmp_path, **fields)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    with api_client(settings(tmp_path, rate_limit="off")) as (client, runtime):
        yield client, runtime


def test_one_line_per_request_with_its_fields(
    app: tuple[TestClient[Any], Runtime], logged: Logged
) -> None:
    client, runtime = app
    key = new_key(runtime)
    key_id = key.split("_")[1]
    body = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
    responses = [
        client.post(TASKS, json=body, headers={"X-API-Key": key}),
        client.get(f"{TASKS}?status=PENDING&token=s3cr3t-in-a-query", headers={"X-API-Key": key}),
        client.get(TASKS),  # no credential: the gate's 401
        client.get(TASKS, headers={"X-API-Key": key[:-4] + "AAAA"}),  # a wrong key: 401
        client.get(TASKS, headers={"Authorization": f"Bearer {TOKEN}"}),  # a bad token: 401
        client.get("/api/v1/nowhere", headers={"X-API-Key": key}),
        client.get("/health"),  # 503 here: no NATS
    ]
    task_id = responses[0].json()["id"]
    responses.append(client.get(f"{TASKS}/{task_id}", headers={"X-API-Key": key}))
    statuses = [r.status_code for r in responses]
    assert statuses == [201, 200, 401, 401, 401, 404, 503, 200]

    lines = logged.access()
    assert [line["status"] for line in lines] == statuses
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r in responses]
    assert all(HEX32.fullmatch(line["request_id"]) for line in lines)
    assert [line["method"] for line in lines] == ["POST"] + ["GET"] * 7
    assert [line["route"] for line in lines] == [
        TASKS,
        TASKS,
        "-",  # answered by the gate, before routing
        "-",
        "-",
        "-",  # no such route
        "/health",
        "/api/v1/tasks/{taskId}",
    ]
    assert lines[1]["path"] == TASKS  # never the query string
    assert lines[5]["path"] == "/api/v1/nowhere"
    assert [line["principal"] for line in lines] == [
        key_id,
        key_id,
        "-",
        "-",
        "-",
        key_id,
        "-",
        key_id,
    ]
    assert {line["principal_kind"] for line in lines} == {"apikey", "-"}
    for line in lines:
        assert TIMEISH.fullmatch(line["time"]) and line["level"] == "INFO"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["client"] == "testclient"

    # Nothing the service logged holds a credential, a query string or a body, at any
    # level (httpx's lines here are the test client's own).
    served = [line for line in logged.text.splitlines() if '"logger":"httpx"' not in line]
    secret = key.split("_")[2]
    for forbidden in (key, secret, TOKEN, "s3cr3t", "ORD-123", "ITEM-1"):
        assert not [line for line in served if forbidden in line], forbidden


TIMEISH = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("req-123_ABC.def:7", True),
        ("b64+/=", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long
        ("has space", False),
        ("caf\u00e9".encode(), False),  # not ASCII
    ],
)
def test_a_sane_incoming_request_id_is_kept_else_replaced(
    app: tuple[TestClient[Any], Runtime], logged: Logged, sent: str, kept: bool
) -> None:
    client, _ = app
    response = client.get("/health", headers={"X-Request-ID": sent})
    echoed = response.headers["x-request-id"]
    assert (echoed == sent) is kept
    if not kept:
        assert HEX32.fullmatch(echoed)
    (line,) = logged.access()
    assert line["request_id"] == echoed


def test_the_gates_429_is_logged_and_lines_inside_the_request_carry_its_id(
    tmp_path: Path, logged: Logged
) -> None:
    with api_client(settings(tmp_path, rate_limit="2/minute")) as (client, runtime):
        key = new_key(runtime)
        statuses = [
            client.get(TASKS, headers={"X-API-Key": key, "X-Request-ID": f"r{n}"}).status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 429]
    lines = logged.access()
    assert [(line["status"], line["request_id"]) for line in lines] == [
        (200, "r0"),
        (200, "r1"),
        (429, "r2"),
    ]
    others = [json.loads(line) for line in logged.text.splitlines()]
    inside = [line for line in others if line.get("request_id") and line not in lines]
    assert all(line["request_id"] in {"r0", "r1", "r2"} for line in inside)


def test_the_access_log_off_keeps_the_request_id(tmp_path: Path, logged: Logged) -> None:
    with api_client(settings(tmp_path, access_log=False)) as (client, _):
        response = client.get("/health", headers={"X-Request-ID": "mine"})
    assert response.status_code == 503  # no NATS here
    assert response.headers["x-request-id"] == "mine"
    assert logged.access() == []
