"""The facade ``serve``'s HTTP edge calls: commands with read-your-writes, and queries.

Built over the parts the composition root opened (api/bootstrap.py) and, once messaging
started, the NATS bridge (api/bridge.py). A command returns only when the read model
shows its effect (or a short bound passed; the write is durable anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from api.bootstrap import READ_YOUR_WRITES_TIMEOUT_S, ServeParts, open_serve
from api.bridge import Bridge, expire_lost_attempts, start_bridge
from api.health import database_ok
from api.read_fence import ReadFence
from api.security.gate import Security
from api.settings import Settings
from api.tracing import COMMIT_SPAN, traced
from commands.apikeys import ApiKeyService
from commands.batch import BatchCommand
from commands.errors import CommandError
from commands.group_commit import GroupCommit
from commands.messages import CancelTask, FinishManually, Outcome, RequeueTask, SubmitTask
from commands.service import TaskService
from domain.tenancy import visible
from projections.queries import Page, TaskQueries
from projections.runner import ProjectionRunner, ProjectionStopped
from workers import tracing

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    """One ``serve``'s parts, its NATS bridge (None until messaging starts, and without
    NATS), and the facade over them."""

    def __init__(self, parts: ServeParts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.db_config = parts.db_config
        self.catalog = parts.catalog
        self.service: TaskService = parts.service
        self.runner: ProjectionRunner = parts.runner
        self.queries: TaskQueries = parts.queries
        self.apikeys: ApiKeyService = parts.apikeys
        self.security: Security = parts.security
        self.fence: ReadFence = parts.fence
        self.commits: GroupCommit[BatchCommand, Outcome] = parts.commits
        self.availability = parts.availability
        self.bridge: Bridge | None = None

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Connect to the database, create tables, start the projection (blocking)."""
        return cls(open_serve(settings))

    async def start_messaging(self, nats_url: str) -> None:
        """Connect to NATS and start the relay, the results consumer and the sweeps."""
        if self.bridge is None:
            self.bridge = await start_bridge(self.parts, nats_url)

    async def stop_messaging(self) -> None:
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            await bridge.stop()

    def close(self) -> None:
        """Stop and close everything ``open`` started; closing twice is harmless."""
        self.parts.close()

    async def start_security(self) -> None:
        """Open the rate limiter's connections (in the event loop that serves requests)."""
        await self.security.limits.limiter.open()

    async def stop_security(self) -> None:
        await self.security.limits.limiter.close()

    @property
    def nats_connected(self) -> bool:
        return self.bridge is not None and self.bridge.nc.is_connected

    # -- the command facade --------------------------------------------------------------
    # Submits, cancels and requeues go through the group commit. ``asubmit``/``acancel``/
    # ``arequeue`` are for the event loop (no thread is held while the command waits for
    # its batch or for the read model); ``submit``/``cancel`` block, for threads (command
    # line, tests).

    async def asubmit(self, cmd: SubmitTask) -> Outcome:
        # Answered once durable; reads catch up instead (api/read_fence.py). Database
        # unreachable: 503 within about a second (api/availability.py).
        self.availability.check()
        outcome = await self.availability.answer(self.commits.submit(traced(cmd)))
        self.fence.answering(outcome.position)
        return outcome

    async def acancel(self, cmd: CancelTask) -> Outcome:
        self.availability.check()
        outcome = await self.availability.answer(self.commits.submit(traced(cmd)))
        await self._settled(outcome.position)
        return outcome

    async def arequeue(self, cmd: RequeueTask) -> Outcome:
        """Requeue a finished task (``POST …/retry``), answered as ``acancel`` is."""
        self.availability.check()
        outcome = await self.availability.answer(self.commits.submit(traced(cmd)))
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
        if tracing.active():  # every task of the request in its trace; one commit span
            cmds = [traced(cmd) for cmd in cmds]
            with tracing.span(COMMIT_SPAN, attributes={"taskexec.batch": len(cmds)}):
                results = self.service.submit_many(cmds)
        else:
            results = self.service.submit_many(cmds)
        self._after_write()
        # Unlike a single submit, a bulk request waits for its rows: 500 tasks at a time
        # would otherwise run far ahead of the pipeline (docs/benchmarks.md, "Design
        # measurements"), and it is one wait per request.
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
        report (commands/lost_attempts.py). Returns how many."""
        return expire_lost_attempts(self.parts, grace_s)

    async def reconcile_lost_work(self, after_s: float | None = None) -> int:
        """Publish again the work of PENDING tasks whose work is nowhere (api/bridge.py)."""
        if self.bridge is None:
            return 0
        return await self.bridge.reconcile_lost_work(after_s)

    def get_task(self, task_id: UUID, tenant: str | None = None) -> dict[str, Any] | None:
        """The task's row; None if there is none, or if a principal of ``tenant`` may not
        see it (domain/tenancy.py: None sees every task). A hidden task costs what an
        unknown id does (the same look again), so that no timing tells them apart."""

        def visible_row() -> dict[str, Any] | None:
            row = self.queries.get(str(task_id))
            return row if row is not None and visible(row["tenant"], tenant) else None

        projected = self.fence.projected
        row = visible_row()
        if row is None and self.fence.after_miss(projected):  # submitted, not yet projected?
            row = visible_row()
        return row

    def list_tasks(self, **filters: Any) -> Page:
        """A page of tasks; ``tenant`` (a filter): only that tenant's (None: all)."""
        self.fence.before_list()
        return self.queries.list(**filters)

    def list_definitions(self, **filters: Any) -> Page:
        return self.parts.definitions.list(**filters)

    def get_definition(self, definition_id: str) -> dict[str, Any] | None:
        return self.parts.definitions.get(definition_id)

    def health(self) -> dict[str, Any]:
        """Readiness; call it from a thread anyio started (``/health`` does): the NATS
        check asks JetStream, on the event loop, whether the streams can serve."""
        checks = {
            "database": database_ok(self.parts.db),
            "projection": self.runner.error is None,
            "nats": self.bridge is not None and self.bridge.health.ready_from_thread(),
        }
        return checks

    def _after_write(self) -> None:
        self.parts.wakeups()

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
