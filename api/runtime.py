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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from nats.aio.client import Client

from api.availability import Availability
from api.health import JetStreamHealth
from api.messaging import connect_nats
from api.read_fence import ReadFence
from api.security.build import build_security, parse_rates
from api.security.gate import Security
from api.settings import Settings
from commands.apikeys import ApiKeyService
from commands.batch import BatchCommand
from commands.budget import ConnectionBudget
from commands.catalog import DefinitionCatalog
from commands.db_monitor import DatabaseMonitor, DatabaseUnavailable
from commands.db_pool import event_store_pool, watch_database
from commands.errors import CommandError
from commands.group_commit import GroupCommit
from commands.leadership import LockSession, leadership
from commands.messages import CancelTask, FinishManually, Outcome, SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from projections.db import Database
from projections.definitions import DefinitionProjection
from projections.queries import DefinitionQueries, Generation, Page, TaskQueries
from projections.runner import ProjectionRunner, ProjectionStopped
from projections.schema import Projection
from projections.tasks import TaskProjection, timestamp_text
from workers.bridge.lost_work import LostWork
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.bridge.results import ResultsConsumer
from workers.streams import WORK_MAX_DELIVER, EventsRetention, ensure_streams

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_YOUR_WRITES_TIMEOUT_S = 5.0
# How long a request waits for a pooled connection (then 503): commands/db_pool.py.
POOL_WAIT_S = 1.0
# An attempt may run for its timeout; JetStream redelivers unacked work after its ack wait,
# so a lost attempt is declared only when both (and this margin) have passed.
LEASE_MARGIN_S = 30.0
SWEEP_INTERVAL_S = 5.0
# Bytes of a task's messages besides its input (CloudEvent or work item fields, headers).
MESSAGE_ENVELOPE_ROOM = 16 * 1024


def read_models() -> list[Projection]:
    """Every projection of the read side (rebuilt together, one position)."""
    return [TaskProjection(), DefinitionProjection()]


class Runtime:
    """Owns the service, the read model and the background loops of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_config = DatabaseConfig.from_url(settings.database_url)
        self.catalog = DefinitionCatalog.load(settings.definitions_dir)
        self._service: TaskService | None = None
        self._commits: GroupCommit[BatchCommand, Outcome] | None = None
        self._db: Database | None = None
        self._runner: ProjectionRunner | None = None
        self._fence: ReadFence | None = None
        self._queries: TaskQueries | None = None
        self._definitions: DefinitionQueries | None = None
        self._nc: Client | None = None
        self._relay: Relay | None = None
        self._publisher: JetStreamPublisher | None = None
        self._consumer: ResultsConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._lost_work: LostWork | None = None
        self._nats_health: JetStreamHealth | None = None  # the /health check of NATS
        self._apikeys: ApiKeyService | None = None
        self._security: Security | None = None
        # PostgreSQL: the connection budget, the breaker, one connection for both locks.
        rates = parse_rates(settings)
        in_db = self.db_config.is_postgres and rates != (None, None)
        self.budget = ConnectionBudget.split(settings.db_pool_size, rate_limits=in_db)
        self.monitor: DatabaseMonitor | None = None
        self.availability = Availability(None)  # answers commands; set up in open()
        self._locks: LockSession | None = None

    # -- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the database, create tables, start the projection. Once: opening
        an open runtime (an app's lifespan around one a caller opened) changes nothing."""
        if self._service is not None:
            return
        prepare_database(self.db_config)
        budget = self.budget
        env = self.db_config.eventsourcing_env(budget.event_store, POOL_WAIT_S)
        self._service = TaskService(env, self.catalog)
        self._apikeys = ApiKeyService(self._service)
        self._security = build_security(
            self.settings, self.db_config, self._apikeys, budget.rate_limits
        )
        self.catalog.set_revisions(self._service.register_definitions(self.catalog.all()))
        self._db = Database(self.db_config, budget.read_models, POOL_WAIT_S)
        if self.db_config.is_postgres:  # a breaker over both pools and the lock connection
            log.info("%s", budget.describe())
            pools = (event_store_pool(self._service.recorder), self._db.pool)
            self.monitor, self._locks = watch_database(self.db_config, pools)
        self.availability = Availability(self.monitor)
        generation = Generation(self._db)
        self._queries = TaskQueries(self._db, generation)
        self._definitions = DefinitionQueries(self._db, generation)
        self._runner = ProjectionRunner(
            self._service.follow_log,
            read_models(),
            self._db,
            listen_channel=(
                getattr(self._service.recorder, "channel_name", None) if budget.listen else None
            ),
            lock_session=self._locks,
        )
        self._runner.start()
        service = self._service
        self._fence = ReadFence(
            self._runner,
            lambda: service.recorder.max_notification_id() or 0,
            READ_YOUR_WRITES_TIMEOUT_S,
        )
        self._commits = GroupCommit(self._service.execute, on_committed=self._after_write)
        self._commits.start()
        # The definitions just recorded are readable before the first request is served.
        self._read_your_write(self._service.recorder.max_notification_id() or 0)

    async def start_messaging(self, nats_url: str) -> None:
        """Connect to NATS (one server or several: a cluster); bring the streams up to
        date (retention, replicas); start the relay and the results consumer."""
        self._nc = await connect_nats(nats_url, name="taskexec-serve")
        self._nats_health = JetStreamHealth(self._nc)
        retention = EventsRetention(self.settings.events_max_age_s, self.settings.events_max_bytes)
        await ensure_streams(
            self._nc.jetstream(),
            self.settings.work_ack_wait_s,
            retention,
            replicas=self.settings.nats_replicas,
        )
        # What the relay cannot publish is refused at the door (413), not accepted.
        self.service.max_input_bytes = self._nc.max_payload - MESSAGE_ENVELOPE_ROOM
        self._publisher = JetStreamPublisher(self._nc)
        relay_lock = leadership(self.db_config, "relay", self._locks)  # one across replicas
        self._relay = Relay(Outbox(self.service, relay_lock), self._publisher)
        self._consumer = ResultsConsumer(self.service, self._nc, on_recorded=self._after_write)
        self._tasks = [
            asyncio.create_task(self._relay.run(), name="relay"),
            asyncio.create_task(self._consumer.run(), name="results-consumer"),
        ]
        self._lost_work = LostWork(self.service, self._nc)
        await self._lost_work.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="lost-attempts-sweep")

    async def stop_messaging(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._lost_work is not None:
            with contextlib.suppress(Exception):
                await self._lost_work.stop()
            self._lost_work = None
        if self._relay is not None:
            self._relay.stop()
        if self._consumer is not None:
            self._consumer.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
            self._tasks = []
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()
            self._publisher = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
            self._nats_health = None

    def close(self) -> None:
        """Stop and close everything ``open()`` started; closing twice is harmless."""
        if self._commits is not None:
            self._commits.stop()
        if self._runner is not None:
            self._runner.stop()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._service is not None:
            self._service.close()
            self._service = None
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self._locks is not None:
            self._locks.close()
            self._locks = None

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
    def apikeys(self) -> ApiKeyService:
        assert self._apikeys is not None, "Runtime.open() first"
        return self._apikeys

    @property
    def security(self) -> Security:
        assert self._security is not None, "Runtime.open() first"
        return self._security

    async def start_security(self) -> None:
        """Open the rate limiter's connections (in the event loop that serves requests)."""
        await self.security.limits.limiter.open()

    async def stop_security(self) -> None:
        if self._security is not None:
            await self._security.limits.limiter.close()

    @property
    def nats_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    # -- the command facade --------------------------------------------------------------
    # Submits and cancels go through the group commit. ``asubmit``/``acancel`` are for the
    # event loop (no thread is held while the command waits for its batch or for the read
    # model); ``submit``/``cancel`` block, for threads (command line, tests).

    @property
    def fence(self) -> ReadFence:
        assert self._fence is not None, "Runtime.open() first"
        return self._fence

    @property
    def commits(self) -> GroupCommit[BatchCommand, Outcome]:
        assert self._commits is not None, "Runtime.open() first"
        return self._commits

    async def asubmit(self, cmd: SubmitTask) -> Outcome:
        # Answered once durable; reads catch up instead (api/read_fence.py). Database
        # unreachable: 503 within about a second (api/availability.py).
        self.availability.check()
        outcome = await self.availability.answer(self.commits.submit(cmd))
        self.fence.answering(outcome.position)
        return outcome

    async def acancel(self, cmd: CancelTask) -> Outcome:
        self.availability.check()
        outcome = await self.availability.answer(self.commits.submit(cmd))
        await self._settled(outcome.position)
        return outcome

    async def awrite(self, call: Callable[[], T]) -> T:
        """A blocking write (a bulk request) on a thread, answered as ``asubmit`` is."""
        return await self.availability.run(call)

    def submit(self, cmd: SubmitTask) -> Outcome:
        outcome = self.commits.submit(cmd).result()
        self.fence.answering(outcome.position)
        return outcome

    def cancel(self, cmd: CancelTask) -> Outcome:
        outcome = self.commits.submit(cmd).result()
        self._read_your_write(outcome.position)
        return outcome

    def submit_many(self, cmds: Sequence[SubmitTask]) -> list[Outcome | CommandError]:
        """A bulk request: already one transaction of its own, so it skips the queue."""
        results = self.service.submit_many(cmds)
        self._after_write()
        # Unlike a single submit, a bulk request waits for its rows: 500 tasks at a time
        # would otherwise run far ahead of the pipeline (measured: 0.87x the throughput,
        # 1.16x serve's CPU per task), and it is one wait per request.
        self._settle([result for result in results if isinstance(result, Outcome)])
        return results

    def _settle(self, outcomes: Sequence[Outcome]) -> None:
        """Read-your-writes for all of them (a replay's position is at or past its task's
        events, and usually applied long ago: then there is no wait)."""
        if outcomes:
            self._read_your_write(max(outcome.position for outcome in outcomes))

    def finish_manually(self, cmd: FinishManually) -> Outcome:
        outcome = self.service.finish_manually(cmd)
        self._after_write()
        self._read_your_write(outcome.position)
        return outcome

    def expire_lost_attempts(self, grace_s: float | None = None) -> int:
        """Fail (and so retry per policy) attempts that ran past timeout + grace without a
        report: their worker vanished and JetStream gave up redelivering. Returns how many."""
        if not self.runner.active:  # one replica sweeps: the one that writes read models
            return 0
        if grace_s is None:  # redelivery (ack wait) and a margin must have passed
            grace_s = self.settings.work_ack_wait_s + LEASE_MARGIN_S
        before = timestamp_text(datetime.now(UTC) - timedelta(seconds=grace_s))
        expired = 0
        for task_id, attempt in self.queries.expired_leases(before):
            reason = f"no report from attempt {attempt} within its timeout + {grace_s:.0f} s"
            if self.service.expire_attempt(UUID(task_id), attempt, reason):
                expired += 1
        if expired:
            self._after_write()
        return expired

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await asyncio.to_thread(self.expire_lost_attempts)
                await self.reconcile_lost_work()
            except Exception:
                log.exception("sweep of lost attempts failed; next one in %d s", SWEEP_INTERVAL_S)

    async def reconcile_lost_work(self, after_s: float | None = None) -> int:
        """Publish again the work of PENDING tasks whose work is nowhere
        (workers/bridge/lost_work.py): due for longer than JetStream could have spent
        delivering it (``after_s``)."""
        if self._lost_work is None or not self.runner.active:  # the replica that sweeps
            return 0
        if after_s is None:
            after_s = self.settings.work_ack_wait_s * WORK_MAX_DELIVER + LEASE_MARGIN_S
        before = timestamp_text(datetime.now(UTC) - timedelta(seconds=after_s))
        return await self._lost_work.reconcile(self.queries.stranded, before)

    def get_task(self, task_id: UUID) -> dict[str, Any] | None:
        projected = self.fence.projected
        row = self.queries.get(str(task_id))
        if row is None and self.fence.after_miss(projected):  # submitted, not yet projected?
            row = self.queries.get(str(task_id))
        return row

    def list_tasks(self, **filters: Any) -> Page:
        self.fence.before_list()
        return self.queries.list(**filters)

    def list_definitions(self, **filters: Any) -> Page:
        assert self._definitions is not None, "Runtime.open() first"
        return self._definitions.list(**filters)

    def get_definition(self, definition_id: str) -> dict[str, Any] | None:
        assert self._definitions is not None, "Runtime.open() first"
        return self._definitions.get(definition_id)

    def health(self) -> dict[str, Any]:
        """Readiness; call it from a thread anyio started (``/health`` does): the NATS
        check asks JetStream, on the event loop, whether the streams can serve."""
        checks = {
            "database": self._database_ok(),
            "projection": self.runner.error is None,
            "nats": self._nats_health is not None and self._nats_health.ready_from_thread(),
        }
        return checks

    def _database_ok(self) -> bool:
        assert self._db is not None
        try:
            with self._db.read() as cur:
                cur.execute("SELECT 1").fetchone()
        except DatabaseUnavailable:  # the monitor has logged the outage
            return False
        except Exception:
            log.exception("health: database check failed")
            return False
        return True

    def _after_write(self) -> None:
        if self._relay is not None:
            self._relay.poke()
        self.runner.poke()

    async def _settled(self, position: int) -> None:
        """Read-your-writes on the event loop: wait for the read model, holding no thread."""
        try:
            await asyncio.wait_for(
                asyncio.wrap_future(self.runner.applied(position)), READ_YOUR_WRITES_TIMEOUT_S
            )
        except (TimeoutError, ProjectionStopped) as exc:
            # The events are durable; only the read model lags. Say so, do not fail.
            log.warning("read model behind position %d: %s", position, exc)

    def _read_your_write(self, position: int) -> None:
        try:
            self.runner.wait_for(position, READ_YOUR_WRITES_TIMEOUT_S)
        except (TimeoutError, ProjectionStopped) as exc:
            # The events are durable; only the read model lags. Say so, do not fail.
            log.warning("read model behind position %d: %s", position, exc)
