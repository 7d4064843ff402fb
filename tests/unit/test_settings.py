"""api/settings.py: every TASKEXEC_* variable parsed in one place; a bad value is one line
naming the variable and the form it takes, and ``taskexec`` exits with 2 on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import main
from api.settings import VARIABLES, Settings
from commands import gc_pause
from commands.db_pool import CONNINFO_KEY, POOL_WAIT_KEY
from commands.fast_paths import FastPaths

ROOT = Path(__file__).parents[2]
NAMES = {variable.name for variable in VARIABLES}
SECRET = "s" * 32

GOOD: list[tuple[str, str, str, Any]] = [
    ("TASKEXEC_DATABASE_URL", "sqlite:///x.db", "database_url", "sqlite:///x.db"),
    ("TASKEXEC_DATABASE_URL", "postgresql://u:p@h:5433/db", "database_url", None),
    ("TASKEXEC_NATS_URL", "nats://a:4222,nats://b:4222", "nats_url", None),
    ("TASKEXEC_NATS_REPLICAS", "3", "nats_replicas", 3),
    ("TASKEXEC_DEFINITIONS_DIR", "/etc/defs", "definitions_dir", Path("/etc/defs")),
    ("TASKEXEC_VAR_DIR", "/tmp/v", "var_dir", Path("/tmp/v")),
    ("TASKEXEC_JWT_JWKS", "/etc/jwks.json", "jwt_jwks", None),
    ("TASKEXEC_JWT_JWKS", "https://auth.example/jwks", "jwt_jwks", None),
    ("TASKEXEC_JWT_JWKS", "http://127.0.0.1:8080/jwks", "jwt_jwks", None),
    ("TASKEXEC_JWT_SECRET", SECRET, "jwt_secret", None),
    ("TASKEXEC_JWT_ISSUER", "https://issuer", "jwt_issuer", None),
    ("TASKEXEC_JWT_AUDIENCE", "taskexec", "jwt_audience", None),
    ("TASKEXEC_JWT_TENANT_CLAIM", "https://example.test/tenant", "jwt_tenant_claim", None),
    ("TASKEXEC_RATE_LIMIT", "10/second", "rate_limit", None),
    ("TASKEXEC_RATE_LIMIT", "off", "rate_limit", None),
    ("TASKEXEC_RATE_LIMIT_BULK", "5/hours", "rate_limit_bulk", None),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "45", "work_ack_wait_s", 45.0),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "2.5", "work_ack_wait_s", 2.5),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "30s", "work_ack_wait_s", 30.0),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "2m", "work_ack_wait_s", 120.0),
    ("TASKEXEC_EVENTS_MAX_AGE", "12h", "events_max_age_s", 12 * 3600.0),
    ("TASKEXEC_EVENTS_MAX_AGE", "unlimited", "events_max_age_s", 0.0),
    ("TASKEXEC_EVENTS_MAX_BYTES", "1GiB", "events_max_bytes", 2**30),
    ("TASKEXEC_EVENTS_MAX_BYTES", "unlimited", "events_max_bytes", -1),
    ("TASKEXEC_DB_POOL_SIZE", "12", "db_pool_size", 12),
    ("TASKEXEC_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("TASKEXEC_LOG_LEVEL", "WARNING", "log_level", "WARNING"),
    ("TASKEXEC_LOG_FORMAT", "JSON", "log_format", "json"),
    ("TASKEXEC_LOG_FORMAT", "text", "log_format", "text"),
    ("TASKEXEC_ACCESS_LOG", "off", "access_log", False),
    ("TASKEXEC_FAST_NATS_WIRE", "off", "fast_nats_wire", False),
    ("TASKEXEC_FAST_PG_INSERT", "no", "fast_pg_insert", False),
    ("TASKEXEC_FAST_TASK_CACHE", "false", "fast_task_cache", False),
    ("TASKEXEC_FAST_RECENT_EVENTS", "0", "fast_recent_events", False),
    ("TASKEXEC_FAST_GC_PAUSE", "OFF", "fast_gc_pause", False),
    ("TASKEXEC_FAST_GC_PAUSE", "on", "fast_gc_pause", True),
    ("TASKEXEC_METRICS", "off", "metrics", False),
    ("TASKEXEC_WORKER_METRICS_PORT", "9464", "worker_metrics_port", 9464),
    (
        "TASKEXEC_WORKER_EXECUTORS",
        "gpu, standard-executor",
        "worker_executors",
        ("gpu", "standard-executor"),
    ),
    ("TASKEXEC_WORKER_CPUS", "2", "worker_cpus", 2000),
    ("TASKEXEC_WORKER_CPUS", "1500m", "worker_cpus", 1500),
    ("TASKEXEC_WORKER_MEMORY", "4Gi", "worker_memory", 4 * 2**30),
    ("TASKEXEC_WORKER_MEMORY", "500M", "worker_memory", 500_000_000),
]

# (variable, bad text, a fragment of the accepted form the message gives)
BAD: list[tuple[str, str, str]] = [
    ("TASKEXEC_DATABASE_URL", "mysql://h/db", "sqlite:///"),
    ("TASKEXEC_DATABASE_URL", "postgresql://u:hunter2@h:port/db", "postgresql://"),
    ("TASKEXEC_NATS_URL", "localhost:4222", "nats://"),
    ("TASKEXEC_NATS_REPLICAS", "7", "from 1 to 5"),
    ("TASKEXEC_JWT_JWKS", "http://auth.example/jwks", "https URL"),
    ("TASKEXEC_JWT_SECRET", "short", "at least 32 bytes"),
    ("TASKEXEC_JWT_TENANT_CLAIM", "org id", "a claim's name"),
    ("TASKEXEC_JWT_TENANT_CLAIM", "scope", "not one of exp, iat, nbf, permissions, scope"),
    ("TASKEXEC_RATE_LIMIT", "100", "N/minute"),
    ("TASKEXEC_RATE_LIMIT_BULK", "0/minute", "N >= 1"),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "30x", "positive number of seconds"),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "-5", "positive number of seconds"),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "0", "positive number of seconds"),
    ("TASKEXEC_WORK_ACK_WAIT_SECONDS", "unlimited", "positive number of seconds"),
    ("TASKEXEC_EVENTS_MAX_AGE", "-1d", "unlimited"),
    ("TASKEXEC_EVENTS_MAX_BYTES", "0", "unlimited"),
    ("TASKEXEC_DB_POOL_SIZE", "4", "at least 5"),
    ("TASKEXEC_LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING"),
    ("TASKEXEC_LOG_FORMAT", "logfmt", "use text or json"),
    ("TASKEXEC_ACCESS_LOG", "sometimes", "on or off"),
    ("TASKEXEC_FAST_NATS_WIRE", "maybe", "on or off"),
    ("TASKEXEC_FAST_PG_INSERT", "2", "on or off"),
    ("TASKEXEC_FAST_TASK_CACHE", "disabled", "on or off"),
    ("TASKEXEC_FAST_RECENT_EVENTS", "y", "on or off"),
    ("TASKEXEC_FAST_GC_PAUSE", "nope", "on or off"),
    ("TASKEXEC_METRICS", "prometheus", "on or off"),
    ("TASKEXEC_WORKER_METRICS_PORT", "70000", "from 1 to 65535"),
    ("TASKEXEC_WORKER_METRICS_PORT", "http", "from 1 to 65535"),
    ("TASKEXEC_WORKER_EXECUTORS", "gpu.large", "lower-case letters, digits and '-'"),
    ("TASKEXEC_WORKER_EXECUTORS", ",", "names no pool"),
    ("TASKEXEC_WORKER_CPUS", "two", "250m"),
    ("TASKEXEC_WORKER_CPUS", "0", "at least 1m"),
    ("TASKEXEC_WORKER_MEMORY", "4GB", "128Mi"),
    ("TASKEXEC_WORKER_MEMORY", "0", "from 1 byte"),
]


@pytest.mark.parametrize(("name", "text", "field", "value"), GOOD)
def test_a_good_value_sets_its_field(name: str, text: str, field: str, value: Any) -> None:
    settings = Settings.from_env({name: f" {text} "})  # surrounding blanks do not count
    assert getattr(settings, field) == (text if value is None else value)


@pytest.mark.parametrize(("name", "text", "form"), BAD)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_form(
    name: str, text: str, form: str
) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        Settings.from_env({name: text})
    message = str(caught.value)
    assert message.startswith(name), message
    assert form in message
    assert "\n" not in message
    assert "hunter2" not in message  # no password echoed
    if name == "TASKEXEC_JWT_SECRET":
        assert text not in message


def test_every_variable_has_good_and_bad_cases_and_sets_one_field() -> None:
    assert {name for name, *_ in GOOD} == NAMES
    assert {name for name, *_ in BAD} >= NAMES - {
        "TASKEXEC_DEFINITIONS_DIR",  # any path (the catalog says if it is missing)
        "TASKEXEC_VAR_DIR",
        "TASKEXEC_JWT_ISSUER",  # any text
        "TASKEXEC_JWT_AUDIENCE",
    }
    fields = [variable.field for variable in VARIABLES]
    assert len(fields) == len(set(fields)) == len(NAMES)
    # Not TASKEXEC_* variables: a fixed bound, and the OTEL_* rules (test_settings_otel.py).
    assert set(fields) == set(Settings.__dataclass_fields__) - {"apikey_cache_seconds", "tracing"}


def test_unset_or_blank_is_the_default() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env(dict.fromkeys(NAMES, "  ")) == Settings()
    assert Settings().fast_paths == FastPaths()
    assert Settings().log_level == "INFO"
    assert (Settings().log_format, Settings().access_log) == ("text", True)


def test_the_fast_path_switches_make_the_fast_paths() -> None:
    settings = Settings.from_env(
        {"TASKEXEC_FAST_TASK_CACHE": "off", "TASKEXEC_FAST_NATS_WIRE": "off"}
    )
    assert settings.fast_paths == FastPaths(task_cache=False, nats_wire=False)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"work_ack_wait_s": -5.0}, "TASKEXEC_WORK_ACK_WAIT_SECONDS"),
        ({"work_ack_wait_s": 0.0}, "TASKEXEC_WORK_ACK_WAIT_SECONDS"),
        ({"work_ack_wait_s": float("inf")}, "TASKEXEC_WORK_ACK_WAIT_SECONDS"),
        ({"events_max_age_s": -1.0}, "TASKEXEC_EVENTS_MAX_AGE"),
        ({"events_max_bytes": 0}, "TASKEXEC_EVENTS_MAX_BYTES"),
        ({"log_level": "LOUD"}, "TASKEXEC_LOG_LEVEL"),
        ({"log_format": "xml"}, "TASKEXEC_LOG_FORMAT"),
        ({"rate_limit": "lots"}, "TASKEXEC_RATE_LIMIT"),
        ({"database_url": "mysql://h/db"}, "TASKEXEC_DATABASE_URL"),
        ({"db_pool_size": 2}, "TASKEXEC_DB_POOL_SIZE"),
        ({"worker_metrics_port": 0}, "TASKEXEC_WORKER_METRICS_PORT"),
        ({"worker_cpus": 0}, "TASKEXEC_WORKER_CPUS"),
        ({"worker_memory": -1}, "TASKEXEC_WORKER_MEMORY"),
    ],
)
def test_settings_made_in_code_are_held_to_the_same_forms(
    fields: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        Settings(**fields)
    assert Settings(work_ack_wait_s=1e-3).work_ack_wait_s == 1e-3  # small, but positive


def _named_in(paths: list[Path], pattern: str = r"TASKEXEC_[A-Z0-9_]+") -> set[str]:
    found: set[str] = set()
    for path in paths:
        found |= set(re.findall(pattern, path.read_text()))
    return {name for name in found if not name.endswith("_")}  # not TASKEXEC_FAST_*


def test_every_variable_the_code_reads_is_one_of_the_settings() -> None:
    sources = [
        path
        for package in ("api", "commands", "domain", "projections", "workers", "bench")
        for path in (ROOT / package).rglob("*.py")
    ]
    # Keys of eventsourcing's environment (``X_KEY = "TASKEXEC_..."``), not variables.
    internal = _named_in(sources, r'_KEY = "(TASKEXEC_[A-Z0-9_]+)"')
    assert {CONNINFO_KEY, POOL_WAIT_KEY} <= internal
    assert _named_in(sources) - internal <= NAMES


def test_every_variable_is_documented_in_the_readme() -> None:
    assert _named_in([ROOT / "README.md"]) >= NAMES


def _taskexec(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "name", "text"),
    [
        ("serve", "TASKEXEC_WORK_ACK_WAIT_SECONDS", "30x"),
        ("serve", "TASKEXEC_LOG_LEVEL", "chatty"),
        ("dev", "TASKEXEC_LOG_FORMAT", "yaml"),
        ("worker", "TASKEXEC_ACCESS_LOG", "maybe"),
        ("worker", "TASKEXEC_WORK_ACK_WAIT_SECONDS", "-5"),
        ("worker", "TASKEXEC_FAST_GC_PAUSE", "sometimes"),
    ],
)
def test_the_command_line_exits_2_with_one_line(
    tmp_path: Path, command: str, name: str, text: str
) -> None:
    result = _taskexec(tmp_path, command, **{name: text})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"taskexec: {name}={text!r}: use ")
    assert not (tmp_path / "var").exists()  # nothing started


def test_good_values_get_past_the_settings(tmp_path: Path) -> None:
    """A worker with no NATS to find stops at its own check, after the settings."""
    result = _taskexec(
        tmp_path,
        "worker",
        TASKEXEC_LOG_LEVEL="debug",
        TASKEXEC_WORK_ACK_WAIT_SECONDS="30s",
        TASKEXEC_FAST_GC_PAUSE="off",
        TASKEXEC_VAR_DIR=str(tmp_path / "var"),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("taskexec worker: set TASKEXEC_NATS_URL")


def test_main_switches_the_gc_pauses_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKEXEC_FAST_GC_PAUSE", "off")
    monkeypatch.setenv("TASKEXEC_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TASKEXEC_NATS_URL", raising=False)
    try:
        assert main(["worker"]) == 2  # no NATS: stops after the settings took effect
        assert not gc_pause.enabled()
    finally:
        gc_pause.configure(True)
