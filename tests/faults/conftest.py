"""The real processes of a fault test (tests/faults/stack.py) on the test's nats-server:
``stack`` on each database, ``pg_stack`` on PostgreSQL only (replicas, cuts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.stack import Stack
from workers.nats_server import EmbeddedNatsServer


@pytest.fixture
def stack(database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(database_url, nats_server.url, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def pg_stack(postgres_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(postgres_url, nats_server.url, tmp_path)
    yield running
    running.stop_all()
