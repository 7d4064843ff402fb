"""The composition root of a ``serve`` process: builds the object graph from Settings.

Nothing connects at import time. ``open()`` connects to the database and starts the
projection; ``start_messaging()`` connects to NATS and starts the relay and the results
consumer. The command facade here adds read-your-writes: a command returns only when
the read model shows its effect (or a short bound passed; the write is durable anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import nats
from nats.aio.client import Client

from api.settings import Settings
from commands.catalog import DefinitionCatalog
from commands.messages import CancelTask, Outcome, SubmitTask
from commands.outbox import Outbox
from commands.persistence import DatabaseConfig, prepare_database
from commands.results import ResultsConsumer
from commands.service import TaskService
from projections.db import Database
from projections.queries import TaskQueries
from projections.runner import ProjectionRunner, ProjectionStopped
from projections.tasks import TaskProjection
from workers.relay import Relay
from workers.streams import ensure_streams

log = logging.getLogger(__name__)

READ_YOUR_WRITES_TIMEOUT_S = 5.0


class Runtime:
    """Owns the service, the read model and the background loops of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_config = DatabaseConfig.from_url(settings.database_url)
        self.catalog = DefinitionCatalog.load(settings.definitions_dir)
        self._service: TaskService | None = None
        self._db: Database | None = None
        self._runner: ProjectionRunner | None = None
        self._queries: TaskQueries | None = None
        self._nc: Client | None = None
        self._relay: Relay | None = None
        self._consumer: ResultsConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the database, create tables, start the projection."""
        prepare_database(self.db_config)
        self._service = TaskService(self.db_config.eventsourcing_env(), self.catalog)
        self._db = Database(self.db_config)
        self._queries = TaskQueries(self._db)
        self._runner = ProjectionRunner(self._service.read_log, TaskProjection(), self._db)
        self._runner.start()

    async def start_messaging(self, nats_url: str) -> None:
        """Connect to NATS; start the relay and the results consumer."""
        self._nc = await nats.connect(nats_url, name="taskexec-serve", max_reconnect_attempts=-1)
        await ensure_streams(self._nc.jetstream())
        self._relay = Relay(Outbox(self.service), self._nc.jetstream())
        self._consumer = ResultsConsumer(self.service, self._nc, on_recorded=self._after_write)
        self._tasks = [
            asyncio.create_task(self._relay.run(), name="relay"),
            asyncio.create_task(self._consumer.run(), name="results-consumer"),
        ]

    async def stop_messaging(self) -> None:
        if self._relay is not None:
            self._relay.stop()
        if self._consumer is not None:
            self._consumer.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
            self._tasks = []
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None

    def close(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        if self._db is not None:
            self._db.close()
        if self._service is not None:
            self._service.close()

    # -- parts ------------------------------------------------------------------------

    @property
    def service(self) -> TaskService:
        assert self._service is not None, "Runtime.open() first"
        return self._service

    @property
    def runner(self) -> ProjectionRunner:
        assert self._runner is not None, "Runtime.open() first"
        return self._runner

    @property
    def queries(self) -> TaskQueries:
        assert self._queries is not None, "Runtime.open() first"
        return self._queries

    @property
    def nats_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    # -- the command facade (called from worker threads) ---------------------------------

    def submit(self, cmd: SubmitTask) -> Outcome:
        outcome = self.service.submit(cmd)
        self._read_your_write(outcome.position)
        return outcome

    def cancel(self, cmd: CancelTask) -> Outcome:
        outcome = self.service.cancel(cmd)
        self._read_your_write(outcome.position)
        return outcome

    def get_task(self, task_id: UUID) -> dict[str, Any] | None:
        return self.queries.get(str(task_id))

    def health(self) -> dict[str, Any]:
        checks = {
            "database": self._database_ok(),
            "projection": self.runner.error is None,
            "nats": self.nats_connected,
        }
        return checks

    def _database_ok(self) -> bool:
        assert self._db is not None
        try:
            with self._db.read() as cur:
                cur.execute("SELECT 1").fetchone()
        except Exception:
            log.exception("health: database check failed")
            return False
        return True

    def _after_write(self) -> None:
        if self._relay is not None:
            self._relay.poke()
        self.runner.poke()

    def _read_your_write(self, position: int) -> None:
        self._after_write()
        try:
            self.runner.wait_for(position, READ_YOUR_WRITES_TIMEOUT_S)
        except (TimeoutError, ProjectionStopped) as exc:
            # The events are durable; only the read model lags. Say so, do not fail.
            log.warning("read model behind position %d: %s", position, exc)
