"""The real processes of a fault test (tests/faults/stack.py) on the test's nats-server:
``stack`` on each database, ``pg_stack`` on PostgreSQL only (replicas, cuts). In a module
marked ``restartable_nats``, ``stack`` runs on ``nats``, a nats-server the test may kill
and start again (tests/faults/nats_restart.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.nats_restart import RestartableNats
from tests.faults.stack import Stack
from workers.nats_server import EmbeddedNatsServer


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[RestartableNats]:
    server = RestartableNats(tmp_path / "nats")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stack(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    if request.node.get_closest_marker("restartable_nats"):
        url = request.getfixturevalue("nats").url
    else:
        url = request.getfixturevalue("nats_server").url
    running = Stack(database_url, url, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def pg_stack(postgres_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(postgres_url, nats_server.url, tmp_path)
    yield running
    running.stop_all()
