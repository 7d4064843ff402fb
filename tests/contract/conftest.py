"""The contract suite's one fixture: each case runs on every event store the service has.

``store`` is the in-memory store (commands/memory.py), a SQLite file and a PostgreSQL
schema in turn. The PostgreSQL run carries the ``postgres`` marker and takes the
PostgreSQL fixtures of tests/conftest.py: it fails, never skips, when PostgreSQL is
unreachable (``TASKEXEC_TEST_POSTGRES=skip`` alone leaves it out). ``-m "not postgres"``
or ``-k memory`` select the quick runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService

OpenService = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseConfig:
    """Where the events live: every service built from it shares them."""
    if request.param == "memory":
        return DatabaseConfig.memory()
    if request.param == "sqlite":
        return DatabaseConfig.from_url(f"sqlite:///{tmp_path / 'taskexec.db'}")
    config = DatabaseConfig.from_url(request.getfixturevalue("postgres_url"))
    prepare_database(config)
    return config


@pytest.fixture
def open_service(store: DatabaseConfig) -> Iterator[OpenService]:
    """``open_service(cls=TaskService, catalog=None, **kwargs)``: a service (of ``cls``)
    on ``store``, as another process would open it; closed at the end of the test."""
    opened: list[TaskService] = []

    def open_(
        cls: type[TaskService] = TaskService,
        catalog: DefinitionCatalog | None = None,
        **kwargs: Any,
    ) -> Any:
        service = cls(store.eventsourcing_env(), catalog or DefinitionCatalog.load(), **kwargs)
        opened.append(service)
        return service

    yield open_
    for service in reversed(opened):
        service.close()


@pytest.fixture
def service(open_service: OpenService) -> TaskService:
    """The write side with the built-in definitions, on each store."""
    opened: TaskService = open_service()
    return opened


@pytest.fixture
def replica(service: TaskService, open_service: OpenService) -> TaskService:
    """Another replica's write side on the same store (its own task cache)."""
    opened: TaskService = open_service()
    return opened
