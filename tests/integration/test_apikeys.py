"""API keys end to end (SQLite and PostgreSQL): the real ``taskexec apikey`` command in its
own process, the running API picking up new and revoked keys without a restart, hashes
only in the store, events naming who did what, and the development key of ``taskexec dev``."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.cli.apikey import DEV_KEY_NAME, ensure_dev_key
from api.settings import Settings
from commands.apikeys import TOPICS, ApiKeyService
from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.apikey import ApiKey
from domain.permissions import ALL_PERMISSIONS
from tests.conftest import taskexec
from tests.security_support import OPERATOR, TASKS, api_client, assert_unauthorized

KEY = re.compile(r"tex_[0-9a-f]{16}_[a-z2-7]{52}")


def listed(database_url: str, cwd: Path) -> list[dict[str, Any]]:
    result = taskexec(database_url, cwd, "apikey", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_cli_manages_keys_that_a_running_api_honours(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path, apikey_cache_seconds=0.5)
    with api_client(settings) as (client, _):
        created = taskexec(
            database_url,
            tmp_path,
            "apikey",
            "create",
            "--name",
            "orders-service",
            "--permissions",
            "tasks:execute,tasks:list",
            "--expires",
            "30d",
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert created.stdout == key + "\n"  # the key and nothing else on stdout
        assert KEY.fullmatch(key)
        key_id = key.split("_")[1]
        assert key_id in created.stderr

        # Created by another process while the API runs: usable at once.
        assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200
        assert client.get(f"{TASKS}/definitions", headers={"X-API-Key": key}).status_code == 403

        [entry] = listed(database_url, tmp_path)
        assert entry["keyId"] == key_id
        assert (entry["name"], entry["status"]) == ("orders-service", "active")
        assert entry["permissions"] == ["tasks:execute", "tasks:list"]
        assert entry["createdBy"]["kind"] == "operator"
        expires = datetime.fromisoformat(entry["expiresAt"].replace("Z", "+00:00"))
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
        table = taskexec(database_url, tmp_path, "apikey", "list")
        assert key_id in table.stdout and "orders-service" in table.stdout
        assert key not in table.stdout

        revoked = taskexec(database_url, tmp_path, "apikey", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 15
        while client.get(TASKS, headers={"X-API-Key": key}).status_code == 200:
            assert time.monotonic() < deadline, "the revocation never reached the API"
            time.sleep(0.05)
        assert assert_unauthorized(client.get(TASKS, headers={"X-API-Key": key})) == (
            "API key revoked"
        )
        assert listed(database_url, tmp_path)[0]["status"] == "revoked"
        again = taskexec(database_url, tmp_path, "apikey", "revoke", key_id)
        assert (again.returncode, "revoked already" in again.stderr) == (0, True)


def test_the_cli_refuses_bad_input_and_records_nothing(database_url: str, tmp_path: Path) -> None:
    cases = [
        ("--name", "x", "--permissions", "tasks:nope"),
        ("--name", "x", "--permissions", ","),
        ("--name", "x", "--permissions", "all", "--expires", "2020-01-01"),
        ("--name", "x", "--permissions", "all", "--expires", "next tuesday"),
        ("--name", "   ", "--permissions", "all"),
    ]
    for args in cases:
        result = taskexec(database_url, tmp_path, "apikey", "create", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert "taskexec apikey create:" in result.stderr
    assert listed(database_url, tmp_path) == []
    assert taskexec(database_url, tmp_path, "apikey", "revoke", "0123456789abcdef").returncode == 1
    assert taskexec(database_url, tmp_path, "apikey", "revoke", "not-an-id").returncode == 2


def test_all_permissions_and_an_absolute_expiry(database_url: str, tmp_path: Path) -> None:
    result = taskexec(
        database_url,
        tmp_path,
        "apikey",
        "create",
        "--name",
        "ops",
        "--permissions",
        "all",
        "--expires",
        "2999-01-31T12:00:00+01:00",
    )
    assert result.returncode == 0, result.stderr
    [entry] = listed(database_url, tmp_path)
    assert entry["permissions"] == sorted(ALL_PERMISSIONS)
    assert entry["expiresAt"] == "2999-01-31T11:00:00Z"


def test_only_a_hash_is_stored_and_events_name_the_actor(database_url: str) -> None:
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    try:
        keys = ApiKeyService(service)
        key, record = keys.create(name="svc", permissions=["tasks:read"], actor=OPERATOR)
        keys.revoke(record.key_id, OPERATOR)
        secret = key.split("_")[2]
        stored = _raw_states(config)
        assert stored and all(secret.encode() not in state for state in stored)
        digest = hashlib.sha256(key.encode()).hexdigest().encode()
        assert any(digest in state for state in stored)

        notifications = service.recorder.select_notifications(start=1, limit=100, topics=TOPICS)
        assert [n.topic for n in notifications] == [
            "taskexec.apikey.created.v1",
            "taskexec.apikey.revoked.v1",
        ]
        events: list[Any] = [service.mapper.to_domain_event(n) for n in notifications]
        assert [type(e) for e in events] == [ApiKey.Created, ApiKey.Revoked]
        assert all(e.actor == OPERATOR.as_dict() for e in events)
        # The whole log still decodes (the relay and projections read every event).
        assert len(service.read_log(0, 1000)) == len(notifications)
    finally:
        service.close()


def _raw_states(config: DatabaseConfig) -> list[bytes]:
    if config.is_postgres:
        with psycopg.connect(config.conninfo()) as conn:
            rows = conn.execute("SELECT state FROM taskexec_events").fetchall()
        return [bytes(row[0]) for row in rows]
    import sqlite3

    assert config.sqlite_path is not None
    with sqlite3.connect(config.sqlite_path) as conn:
        return [bytes(row[0]) for row in conn.execute("SELECT state FROM stored_events")]


def test_the_development_key_is_kept_private_and_reused(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")
    key = ensure_dev_key(settings)
    assert KEY.fullmatch(key)
    path = settings.dev_api_key_file
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_dev_key(settings) == key  # a restart reuses it

    with api_client(settings) as (client, runtime):
        for path_ in (TASKS, f"{TASKS}/definitions"):
            assert client.get(path_, headers={"X-API-Key": key}).status_code == 200
        record = runtime.apikeys.get(key.split("_")[1])
        assert record is not None
        assert (record.name, record.permissions) == (DEV_KEY_NAME, ALL_PERMISSIONS)
        runtime.apikeys.revoke(record.key_id, OPERATOR)

    replaced = ensure_dev_key(settings)  # revoked: a new one
    assert replaced != key and path.read_text().strip() == replaced


def test_an_outdated_development_key_is_replaced_and_revoked(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    try:
        keys = ApiKeyService(service)
        old, record = keys.create(name=DEV_KEY_NAME, permissions=["tasks:read"], actor=OPERATOR)
        settings.dev_api_key_file.parent.mkdir(parents=True)
        settings.dev_api_key_file.write_text(old)
        new = ensure_dev_key(settings)
        assert new != old
        old_record = keys.get(record.key_id)
        assert old_record is not None and old_record.revoked_at is not None
        # A key file from another database (say, var/ kept, database replaced): replaced too.
        settings.dev_api_key_file.write_text("tex_0123456789abcdef_" + "a" * 52)
        assert ensure_dev_key(settings) not in (new, old)
    finally:
        service.close()


def test_revoke_takes_the_whole_key_too_and_lookups_refuse_junk(
    database_url: str, tmp_path: Path
) -> None:
    created = taskexec(
        database_url, tmp_path, "apikey", "create", "--name", "x", "--permissions", "all"
    )
    key = created.stdout.strip()
    assert taskexec(database_url, tmp_path, "apikey", "revoke", key).returncode == 0
    assert listed(database_url, tmp_path)[0]["status"] == "revoked"
    config = DatabaseConfig.from_url(database_url)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    try:
        keys = ApiKeyService(service)
        assert keys.get("not-a-key-id") is None
        assert keys.get("0123456789abcdef") is None
        assert keys.check("tex_nonsense") is None
        assert keys.check(key) is not None  # revoked, but the key is still the key
    finally:
        service.close()
