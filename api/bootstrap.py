"""The composition root: what each process role needs, built from one Settings.

- ``serve``: ``open_serve`` builds ``ServeParts`` (the write side, the read side, security;
  every part present, closed in reverse order); ``start_bridge`` connects to NATS and
  starts the ``Bridge`` (relay, results consumer, lost work, the sweep of lost attempts).
- command-line commands: ``event_store`` (one ``TaskService``, at most two connections)
  and ``command_stores`` (the service and the read models: rebuild, verify).
- ``worker``: ``run_worker`` (NATS only: a worker never opens the database).

Nothing connects at import time; nothing else builds these objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from api.availability import Availability
from api.metrics.families import ServeMetrics
from api.metrics.tap import MetricsTap
from api.read_fence import ReadFence
from api.security.build import build_security, parse_rates
from api.security.gate import Security
from api.settings import Settings
from api.tracing import traced_commits
from commands.apikeys import ApiKeyService
from commands.batch import BatchCommand
from commands.budget import ConnectionBudget
from commands.catalog import DefinitionCatalog
from commands.db_monitor import DatabaseMonitor
from commands.db_pool import event_store_pool, watch_database
from commands.group_commit import GroupCommit
from commands.leadership import LockSession
from commands.lost_attempts import LostAttempts
from commands.messages import Outcome
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.executor_pool import DEFAULT_POOL
from projections.db import Database
from projections.definitions import DefinitionProjection
from projections.queries import DefinitionQueries, Generation, TaskQueries
from projections.runner import ProjectionRunner
from projections.schema import Projection
from projections.tasks import TaskProjection, timestamp_text
from workers import tracing

if TYPE_CHECKING:  # the worker's: imported when it runs (run_worker)
    from workers.capacity import Capacity
    from workers.sandbox import Sandbox

log = logging.getLogger(__name__)

READ_YOUR_WRITES_TIMEOUT_S = 5.0
# How long a request waits for a pooled connection (then 503): commands/db_pool.py.
POOL_WAIT_S = 1.0


def read_models() -> list[Projection]:
    """Every projection of the read side (rebuilt together, one position)."""
    return [TaskProjection(), DefinitionProjection()]


class Wakeups:
    """What to wake after a write: the projection runner, and the relay once it runs."""

    def __init__(self) -> None:
        self._wake: list[Callable[[], None]] = []

    def add(self, wake: Callable[[], None], first: bool = False) -> None:
        """``first``: before the others (the relay: its messages are on the way to done)."""
        if first:
            self._wake.insert(0, wake)
        else:
            self._wake.append(wake)

    def __call__(self) -> None:
        for wake in self._wake:
            wake()


@dataclass(frozen=True)
class ServeParts:
    """The database side of one ``serve``. ``monitor`` and ``locks`` exist on PostgreSQL
    only (a breaker over its pools; one connection for the advisory locks)."""

    settings: Settings
    db_config: DatabaseConfig
    catalog: DefinitionCatalog
    budget: ConnectionBudget
    service: TaskService
    apikeys: ApiKeyService
    security: Security
    db: Database
    queries: TaskQueries
    definitions: DefinitionQueries
    runner: ProjectionRunner
    fence: ReadFence
    commits: GroupCommit[BatchCommand, Outcome]
    lost_attempts: LostAttempts
    availability: Availability
    wakeups: Wakeups
    monitor: DatabaseMonitor | None
    locks: LockSession | None
    _closing: contextlib.ExitStack
    metrics: ServeMetrics | None = None  # TASKEXEC_METRICS=off: None (api/metrics/)

    def close(self) -> None:
        """Stop and close everything, in the reverse order of opening; twice is harmless."""
        self._closing.close()


def open_serve(settings: Settings) -> ServeParts:
    """Connect to the database, create tables, register the definitions, start the
    projection and the group commit. Blocking. On any failure what was opened is closed."""
    db_config = DatabaseConfig.from_url(settings.database_url)
    catalog = DefinitionCatalog.load(settings.definitions_dir)
    rates = parse_rates(settings)  # a bad rate fails before anything connects
    budget = ConnectionBudget.split(
        settings.db_pool_size, rate_limits=db_config.is_postgres and rates != (None, None)
    )
    off = settings.fast_paths.off()
    if off:
        log.info("fast paths off, the plain library paths instead: %s", ", ".join(off))
    with contextlib.ExitStack() as stack:
        prepare_database(db_config)
        env = db_config.eventsourcing_env(budget.event_store, POOL_WAIT_S, settings.fast_paths)
        service = TaskService(env, catalog)
        stack.callback(service.close)
        apikeys = ApiKeyService(service)
        security = build_security(settings, db_config, apikeys, budget.rate_limits)
        catalog.set_revisions(service.register_definitions(catalog.all()))
        db = Database(db_config, budget.read_models, POOL_WAIT_S)
        stack.callback(db.close)
        monitor, locks = None, None
        if db_config.is_postgres:  # a breaker over both pools and the lock connection
            log.info("%s", budget.describe())
            pools = (event_store_pool(service.recorder), db.pool)
            monitor, locks = watch_database(db_config, pools)
            stack.callback(locks.close)
            stack.callback(monitor.stop)
        generation = Generation(db)
        queries = TaskQueries(db, generation)
        channel = getattr(service.recorder, "channel_name", None) if budget.listen else None
        metrics = ServeMetrics() if settings.metrics else None
        # The metrics tap counts the task events as the projection applies them; first,
        # so that it sees the read model as it was before each batch (api/metrics/tap.py).
        models: list[Projection] = read_models()
        if metrics is not None:
            models.insert(0, MetricsTap(metrics))
        runner = ProjectionRunner(
            partial(service.follow_log, reader="projections"),
            models,
            db,
            listen_channel=channel,
            lock_session=locks,
        )
        runner.start()
        stack.callback(runner.stop)
        fence = ReadFence(
            runner, lambda: service.recorder.max_notification_id() or 0, READ_YOUR_WRITES_TIMEOUT_S
        )
        wakeups = Wakeups()
        wakeups.add(runner.poke)
        execute = traced_commits(service.execute) if tracing.active() else service.execute
        commits: GroupCommit[BatchCommand, Outcome] = GroupCommit(execute, on_committed=wakeups)
        commits.start()
        stack.callback(commits.stop)

        def expired_leases(before: datetime) -> list[tuple[str, int]]:
            return queries.expired_leases(timestamp_text(before))

        parts = ServeParts(
            settings=settings,
            db_config=db_config,
            catalog=catalog,
            budget=budget,
            service=service,
            apikeys=apikeys,
            security=security,
            db=db,
            queries=queries,
            definitions=DefinitionQueries(db, generation),
            runner=runner,
            fence=fence,
            commits=commits,
            lost_attempts=LostAttempts(service, expired_leases, settings.work_ack_wait_s),
            availability=Availability(monitor),
            wakeups=wakeups,
            monitor=monitor,
            locks=locks,
            _closing=stack.pop_all(),
            metrics=metrics,
        )
    return parts


@contextlib.contextmanager
def event_store(
    settings: Settings, pool_size: int = 2, create_tables: bool = True
) -> Iterator[TaskService]:
    """The event store for one command-line command. ``create_tables=False``: the tables
    exist (verify's own processes, where concurrent DDL would collide)."""
    config = DatabaseConfig.from_url(settings.database_url)
    env = config.eventsourcing_env(pool_size=pool_size, fast_paths=settings.fast_paths)
    if create_tables:
        prepare_database(config)
    else:
        env["CREATE_TABLE"] = "no"
    service = TaskService(env, DefinitionCatalog([]))
    try:
        yield service
    finally:
        service.close()


@contextlib.contextmanager
def command_stores(
    settings: Settings, create_tables: bool = True
) -> Iterator[tuple[TaskService, Database]]:
    """The event store and the read models, one connection each (``projections
    rebuild``, ``verify`` and each of its processes)."""
    with event_store(settings, pool_size=1, create_tables=create_tables) as service:
        db = Database(DatabaseConfig.from_url(settings.database_url), pool_size=1)
        try:
            yield service, db
        finally:
            db.close()


async def run_worker(
    settings: Settings,
    nats_url: str,
    concurrency: int,
    worker_id: str | None,
    grace_s: float,
    on_started: Callable[[], None] = lambda: None,
    metrics_at: tuple[str, int] | None = None,
    pools: Sequence[str] = (DEFAULT_POOL,),
    capacity: Capacity | None = None,
    sandbox: Sandbox | None = None,
) -> None:
    """A worker process until SIGTERM or SIGINT: pull the work of its executor ``pools``,
    run it, report. With ``metrics_at`` (host, port): its metrics and probes there
    (workers/metrics_server.py); ``capacity`` and ``sandbox``: what it offers to
    requests, how it runs HIGH attempts."""
    from api.messaging import connect_nats  # here: serve never loads the worker's modules
    from workers.executor import Worker
    from workers.logs import bind as bind_log_context
    from workers.metrics import WorkerMetrics
    from workers.metrics_server import MetricsServer

    metrics = WorkerMetrics(concurrency) if settings.metrics else None
    probes = MetricsServer(metrics.registry if metrics is not None else None)
    if metrics_at is not None:
        probes.start(*metrics_at)  # before NATS: a port in use stops the worker at once
    try:
        nc = await connect_nats(nats_url, name="taskexec-worker")
        worker = Worker(
            nc,
            worker_id=worker_id,
            concurrency=concurrency,
            grace_s=grace_s,
            ack_wait_s=settings.work_ack_wait_s,
            metrics=metrics,
            pools=pools,
            capacity=capacity,
            sandbox=sandbox,
        )
        probes.ready = lambda: worker.ready
        bind_log_context(worker=worker.worker_id)  # on every line from here on
        loop = asyncio.get_running_loop()
        # SIGINT ignored at start (``dev``'s worker): left so; Ctrl-C is for ``dev``.
        interrupt = () if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else (signal.SIGINT,)
        for sig in (signal.SIGTERM, *interrupt):
            loop.add_signal_handler(sig, worker.stop)
        on_started()  # ``settle_heap``: what exists now lives as long as the process
        try:
            await worker.run()
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        probes.stop()
