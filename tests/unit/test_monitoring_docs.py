"""The Grafana dashboard and the Prometheus alert rules under docs/: they parse, they
name only the metrics docs/operations.md lists (which are what the code exports), and
``promtool`` accepts the rules and passes their unit tests (skipped only where
``promtool`` is not on PATH; ``.ci/run`` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics.families import ServeMetrics
from api.metrics.scrape import StoreFigures, render
from workers.bridge.backlog import Backlog, QueueBacklog
from workers.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "docs" / "grafana" / "taskexec.json"
ALERTS = ROOT / "docs" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "docs" / "prometheus" / "alerts_test.yml"

NAME = re.compile(r"taskexec_[a-z_]+")
ROW = re.compile(r"^\| `(taskexec_[a-z_]+)` \| (counter|gauge|histogram)\b", re.MULTILINE)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def documented() -> dict[str, str]:
    """The families of the Metrics section's tables: name -> type."""
    text = OPERATIONS.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return dict(ROW.findall(section))


def sample_names() -> set[str]:
    """The names a query may use: counters as listed (``_total``), gauges as listed,
    histograms' ``_bucket``, ``_sum`` and ``_count`` (never their bare name)."""
    names: set[str] = set()
    for name, kind in documented().items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def exported() -> dict[str, str]:
    """What ``serve`` (counted and read at scrape time) and a worker export, by family."""
    store = StoreFigures({"PENDING": 1}, projection_lag=0, relay_lag=0)
    queues = Backlog(
        {("standard-executor", "high"): QueueBacklog(pending=0, unacked=0, oldest_s=0.0)}, results=0
    )
    texts = (
        render(ServeMetrics().registry, store, queues).decode(),
        generate_latest(WorkerMetrics(concurrency=1).registry).decode(),
    )
    return {
        family.name: family.type
        for text in texts
        for family in text_string_to_metric_families(text)
        if family.name.startswith("taskexec_")
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves left out."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every target's ``expr`` and every query variable's query."""
    queries = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    queries += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return queries


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not on PATH (Debian: the prometheus package; .ci/run adds it)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_the_documented_families_are_the_exported_ones() -> None:
    """docs/operations.md lists exactly the families the code exports, with their types
    (the parser names a counter's family without ``_total``)."""
    docs = {
        name.removesuffix("_total") if kind == "counter" else name: kind
        for name, kind in documented().items()
    }
    assert docs == exported()


def test_the_dashboard_is_a_grafana_dashboard_on_a_datasource_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert board["schemaVersion"] >= 36
    found = list(panels(board))
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    assert len(found) >= 12
    for panel in found:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    # No data source is named by a uid of one installation.
    uids = re.findall(r'"uid": "([^"]*)"', DASHBOARD.read_text())
    assert set(uids) <= {"${datasource}", "-- Grafana --", board["uid"]}


def test_the_dashboard_names_only_documented_metrics() -> None:
    allowed = sample_names()
    used = {name for query in dashboard_queries(dashboard()) for name in NAME.findall(query)}
    assert used - allowed == set()
    # Every documented family is on some panel (a histogram by its buckets).
    wanted = {f"{n}_bucket" if k == "histogram" else n for n, k in documented().items()}
    assert wanted - used == set()


def test_the_alerts_name_only_documented_metrics() -> None:
    allowed = sample_names()
    used = {name for rule in rules() for name in NAME.findall(rule["expr"])}
    assert used
    assert used - allowed == set()


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    assert {
        "TaskexecWorkBacklogOld",
        "TaskexecHighFailureRate",
        "TaskexecProjectionLag",
        "TaskexecRelayLag",
        "TaskexecResultsLag",
        "TaskexecServeDown",
        "TaskexecNoServe",
        "TaskexecWorkerDown",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_promtool_checks_the_rules() -> None:
    done = run(promtool(), "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_runs_the_rules_unit_tests() -> None:
    """alerts_test.yml: every alert fires on one input and stays quiet on another."""
    done = run(promtool(), "test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert tested == {rule["alert"] for rule in rules()}


def test_promtool_parses_the_dashboards_queries(tmp_path: Path) -> None:
    """Each query, its Grafana variables replaced, as a recording rule promtool checks."""
    variables = {
        "$__rate_interval": "5m",
        "$worker_job": "taskexec-worker",
        "$job": "taskexec",
        "$definition": ".*",
    }
    records = []
    for number, query in enumerate(dashboard_queries(dashboard())):
        query = re.sub(r"^label_values\((.*), \w+\)$", r"\1", query)
        for variable, value in variables.items():
            query = query.replace(variable, value)
        records.append({"record": f"dashboard:query_{number}", "expr": query})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = run(promtool(), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
