"""The served OpenAPI document holds against the live service: schemathesis finds nothing.

schemathesis (``st run``, a dev dependency) reads ``/schema/openapi.json`` from a live
``taskexec dev`` (tests/live_service.py: seeded tasks, raised rate limits) and runs every
check it has, in positive and negative modes, through all four phases (examples,
coverage, fuzzing, stateful): once with a key holding every permission and once with a
read-only key. Any failure or error fails the test with schemathesis's own report, whose
"Reproduce with" lines give the request.

Bounded for CI: ``--max-examples`` per operation (25, about 15 s a run here;
``TASKEXEC_CONTRACT_MAX_EXAMPLES`` to go deeper) and deterministic generation, so a run
repeats the same requests (set ``TASKEXEC_CONTRACT_SEED`` to explore with random data).
``max_response_time`` is on at 5 s (the slowest answer seen here is under 0.2 s).

Two things are configured, not left to defaults:
* real ids: the path parameters (by the names the document gives them) and the body's
  ``taskDefinitionId`` are drawn half the time from the seeded tasks and the built-in
  definitions, so reads meet real tasks and submissions reach the definition's
  ``inputSchema``;
* the expected 422s: a definition's own ``inputSchema`` (and a MANUAL task's
  ``outputSchema``) is not in the document, so a schema-valid submission (or completion)
  may be refused for its ``input`` (``output``); and an ``Idempotency-Key`` sent before
  with another body is refused (the run reuses keys). They depend on data, not on the
  request's shape. ``positive_data_acceptance`` is turned off for those two operations
  alone and replaced there by a copy that lets exactly those 422s through
  (tests/schemathesis_hooks.py); every other check stays on.

All checks are on through the configuration (schemathesis's default) rather than
``--checks all``: a command-line selection would override the per-operation setting.
The test checks from the run's events that every built-in check did run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_service import (
    BUILT_IN_DEFINITIONS,
    ROOT,
    LiveService,
    database_for,
    live_service,
)

MAX_EXAMPLES = int(os.environ.get("TASKEXEC_CONTRACT_MAX_EXAMPLES", "25"))
SEED = os.environ.get("TASKEXEC_CONTRACT_SEED")
RUN_TIMEOUT_S = 240
SENSITIVE_MARKERS = ["token", "secret", "password", "auth", "session", "passwd", "credential"]
CUSTOM_CHECK = "positive_data_acceptance_but_state"  # tests/schemathesis_hooks.py
# Every check of schemathesis 4.32 (``st run --help``), and max_response_time (its limit).
ALL_CHECKS = frozenset(
    {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
        "object_level_authorization",
        "max_response_time",
    }
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    workdir = tmp_path_factory.mktemp(f"contract-{request.param}")
    with database_for(request.param, request, workdir) as url, live_service(url, workdir) as svc:
        yield svc


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_string(v) for v in values) + "]"


def path_parameters(document: dict[str, Any]) -> dict[str, str]:
    """Each path parameter of the document, with the dictionary of real values it draws
    from: ``definitions`` under ``/definitions/``, ``tasks`` elsewhere."""
    bindings: dict[str, str] = {}
    for path, item in document["paths"].items():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path":
                    kind = "definitions" if "/definitions/" in path else "tasks"
                    bindings[parameter["name"]] = kind
    return bindings


def write_config(path: Path, api_key: str, task_ids: list[str], document: dict[str, Any]) -> None:
    """The run's schemathesis.toml: hooks, the key, real ids, the one narrowed check."""
    half = "probability = 0.5"
    bindings = [
        f'"path.{name}" = {{ dictionary = "{kind}", {half} }}'
        for name, kind in sorted(path_parameters(document).items())
    ]
    bindings += [
        f'"body.taskDefinitionId" = {{ dictionary = "definitions", {half} }}',
        f'"body.tasks[*].taskDefinitionId" = {{ dictionary = "definitions", {half} }}',
    ]
    path.write_text(
        "\n".join(
            [
                'hooks = "tests.schemathesis_hooks"',
                "",
                "# A reproduction needs the Idempotency-Key (schemathesis hides any name with",
                "# 'key'); X-API-Key and Authorization stay hidden (its keys-to-sanitize).",
                "[output.sanitization]",
                f"sensitive-markers = {toml_list(SENSITIVE_MARKERS)}",
                "",
                "[auth.openapi.apiKeyAuth]",
                f"api_key = {toml_string(api_key)}",
                "",
                "[dictionaries.tasks]",
                f"values = {toml_list(task_ids)}",
                "",
                "[dictionaries.definitions]",
                f"values = {toml_list(list(BUILT_IN_DEFINITIONS))}",
                "",
                "[parameters]",
                *bindings,
                "",
                "# The expected 422s (tests/schemathesis_hooks.py).",
                "[[operations]]",
                'include-name = "POST /api/v1/tasks"',
                "checks.positive_data_acceptance.enabled = false",
                "",
                "[[operations]]",
                'include-name = "POST /api/v1/tasks/{taskId}/complete"',
                "checks.positive_data_acceptance.enabled = false",
                "",
            ]
        )
    )


def run_schemathesis(service: LiveService, api_key: str, workdir: Path) -> tuple[int, str, Path]:
    """``st run`` against the live service; its exit code, output and report folder."""
    config = workdir / "schemathesis.toml"
    document = httpx.get(service.schema_url, timeout=10).json()
    write_config(config, api_key, service.task_ids, document)
    reports = workdir / "report"
    generation = ["--seed", SEED] if SEED else ["--generation-deterministic"]
    if SEED:
        generation += ["--generation-database", "none"]
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"),
        service.schema_url,
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--mode", "all"),
        *("--max-examples", str(MAX_EXAMPLES)),
        *generation,
        "--continue-on-failure",
        *("--suppress-health-check", "too_slow"),  # machine speed, not the contract
        *("--request-timeout", "10"),
        *("--max-response-time", "5"),
        *("--output-truncate", "false"),  # whole bodies in "Reproduce with"
        *("--report", "json,ndjson"),
        *("--report-dir", str(reports)),
        "--no-color",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    finished = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    return finished.returncode, finished.stdout + finished.stderr, reports


def checks_that_ran(reports: Path) -> set[str]:
    """Every check name in the run's events (NDJSON report)."""
    names: set[str] = set()
    for events in reports.glob("*.ndjson"):
        with events.open() as lines:
            for line in lines:
                scenario = json.loads(line).get("ScenarioFinished")
                if not scenario:
                    continue
                for results in scenario["recorder"].get("checks", {}).values():
                    names.update(result["name"] for result in results)
    return names


def summary(reports: Path) -> dict[str, Any]:
    found = sorted(reports.glob("*.json"))
    assert found, f"schemathesis wrote no JSON report in {reports}"
    report: dict[str, Any] = json.loads(found[-1].read_text())
    return report


@pytest.mark.parametrize("key", ["full", "read_only"])
def test_schemathesis_finds_no_failure(service: LiveService, key: str, tmp_path: Path) -> None:
    api_key = service.full_key if key == "full" else service.read_key
    started = time.monotonic()
    code, output, reports = run_schemathesis(service, api_key, tmp_path)
    elapsed = time.monotonic() - started
    report = summary(reports)
    found = {
        "exit_code": code,
        "seconds": round(elapsed, 1),
        "failures": report.get("failures"),
        "errors": report.get("errors"),
        "test_cases": report.get("test_cases"),
    }
    assert code == 0 and not report.get("failures") and not report.get("errors"), (
        f"schemathesis ({key} key) reports problems: {json.dumps(found, indent=1)}\n\n"
        f"{output}\n--- taskexec dev log (tail) ---\n{service.log_tail()}"
    )
    ran = checks_that_ran(reports)
    missing = (ALL_CHECKS | {CUSTOM_CHECK}) - ran
    assert not missing, f"checks that never ran: {sorted(missing)}\n{output}"
