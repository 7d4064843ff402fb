"""Work that never reached a handler, found and dealt with, so that no task waits forever.

Two ways in, both in ``serve``:
- JetStream's max-deliveries advisory: a work message was delivered as often as the
  consumer allows and never acked (workers that died in an attempt's first moments, work
  handed back while the cancel bucket could not be read). If the task never started that
  attempt, its work is published again (at most ``republish_limit`` times, each copy with
  its own ``Nats-Msg-Id``); otherwise, or past the limit, the task ends FAILED
  (``UNDELIVERABLE``). The message is then deleted: a WorkQueue stream keeps it.
- Reconciliation (``reconcile``, from the active replica's sweep): PENDING tasks due for
  longer than a bound while their queue (their pool's, of their priority) holds nothing
  and has nothing in flight. Their work is nowhere (purged, lost with a server, its
  advisory missed while no ``serve`` ran): it is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from uuid import UUID

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from commands.service import TaskService
from domain.executor_pool import DEFAULT_POOL
from domain.task import UNDELIVERABLE
from domain.values import TaskType
from workers.bridge.outbox import work_again, work_for
from workers.limit_subjects import ensure_limit, limit_token, limited_consumer
from workers.protocol import WORK_STREAM, WorkItem, work_consumer, work_decoder
from workers.streams import WORK_ACK_WAIT_S, WORK_MAX_DELIVER, ensure_pool_consumers, headers

log = logging.getLogger(__name__)

MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.*"
QUEUE_GROUP = "taskexec-lost-work"  # one replica handles each advisory
REPUBLISH_LIMIT = 3

# (task id, priority) of PENDING tasks due and unchanged since before the given moment
# (fixed-width UTC text): the read model's answer (projections/queries.py).
StrandedQuery = Callable[[str], list[tuple[str, str]]]


class LostWork:
    """Handles max-deliveries advisories and republishes work that is nowhere."""

    def __init__(
        self,
        service: TaskService,
        nc: Client,
        republish_limit: int = REPUBLISH_LIMIT,
        work_ack_wait_s: float = WORK_ACK_WAIT_S,
    ) -> None:
        self._service = service
        self._ack_wait_s = work_ack_wait_s  # a limited definition's slots come back after it
        self._nc = nc
        self._js = nc.jetstream()
        self._limit = republish_limit
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(MAX_DELIVERIES, queue=QUEUE_GROUP, cb=self._on_max)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_max(self, msg: Msg) -> None:
        try:
            sequence = int(json.loads(msg.data)["stream_seq"])
            await self.undelivered(sequence)
        except Exception:  # logged, never thrown into nats-py's dispatcher
            log.exception("max-deliveries advisory not handled: %r", msg.data[:200])

    async def undelivered(self, sequence: int) -> None:
        """The work message at ``sequence`` of TASK_WORK ran out of deliveries."""
        try:
            stored = await self._js.get_msg(WORK_STREAM, sequence)
        except NotFoundError:
            return  # acked late after all, or handled by another replica
        try:
            item = work_decoder.decode(stored.data or b"")
        except msgspec.DecodeError:
            item = None  # poison: the worker fails its task when it reads the message
        if item is not None:
            await self._settle(item)
        with contextlib.suppress(NotFoundError):  # another replica deleted it
            await self._js.delete_msg(WORK_STREAM, sequence)

    async def _settle(self, item: WorkItem) -> None:
        task_id = UUID(item.task_id)
        if item.redelivery < self._limit and await asyncio.to_thread(
            self._service.awaits_start, task_id, item.attempt
        ):
            again = msgspec.structs.replace(item, redelivery=item.redelivery + 1)
            await self._publish(again, f"again-{again.redelivery}")
            log.warning(
                "work of attempt %d of %s was never taken up: published again (%d of %d)",
                item.attempt,
                item.task_id,
                again.redelivery,
                self._limit,
            )
            return
        reason = f"its work was delivered as often as allowed ({item.redelivery} times again)"
        if await asyncio.to_thread(
            self._service.give_up, task_id, item.attempt, UNDELIVERABLE, reason
        ):
            log.error("task %s FAILED: attempt %d %s", item.task_id, item.attempt, reason)

    async def reconcile(self, stranded: StrandedQuery, before: str) -> int:
        """Publish again the work of PENDING tasks due since before ``before`` whose queue
        is empty with nothing in flight; how many were published."""
        candidates = await asyncio.to_thread(stranded, before)
        idle: dict[str, bool] = {}
        published = 0
        for task_id, _ in candidates:
            due = await asyncio.to_thread(self._due_work, UUID(task_id))
            if due is None:
                continue
            item, version = due
            queue = _consumer(item)  # its pool's (or limited definition's) queue
            if queue not in idle:
                idle[queue] = await self._queue_idle(item)
            if idle[queue]:  # else its work may be in the queue: not lost
                await self._publish(item, f"reconciled-{version}")
                log.warning("task %s was PENDING with its work nowhere: published again", task_id)
                published += 1
        return published

    async def _queue_idle(self, item: WorkItem) -> bool:
        """Nothing pending or in flight on ``item``'s queue. A pool whose consumers are
        missing (its work was never published by this stream's relay, or the stream was
        made again) has them made first: a new consumer counts what waits on its subject,
        however old. A limited definition's queues and slots are made if missing, each
        time (its tasks may wait long for a slot: without slots they would wait for good)."""
        name, pool = _consumer(item), item.executor or DEFAULT_POOL
        if item.max_concurrency is not None:
            await ensure_limit(
                self._js,
                pool,
                item.definition_id,
                item.max_concurrency,
                self._ack_wait_s,
                WORK_MAX_DELIVER,
                current=False,
            )
        try:
            info = await self._js.consumer_info(WORK_STREAM, name)
        except NotFoundError:
            await ensure_pool_consumers(self._js, [pool])
            info = await self._js.consumer_info(WORK_STREAM, name)
        return not info.num_pending and not info.num_ack_pending

    def _due_work(self, task_id: UUID) -> tuple[WorkItem, int] | None:
        """The work of the task's next attempt, if it waits for one; and its version (the
        copy's message id: one copy per state of the task, within the duplicate window)."""
        task = self._service.load(task_id)
        if task.task_type is TaskType.MANUAL or not task.awaits_start(task.attempt + 1):
            return None
        due = task.next_attempt_at.isoformat() if task.next_attempt_at else None
        return work_for(task, task.attempt + 1, not_before=due), int(task.version)

    async def _publish(self, item: WorkItem, again: str) -> None:
        message = work_again(item, again)
        await self._js.publish(message.subject, message.body, headers=headers(message.msg_id))


def _consumer(item: WorkItem) -> str:
    """The durable consumer of ``item``'s queue."""
    if item.max_concurrency is None:
        return work_consumer(item.priority, item.executor)
    pool = item.executor or DEFAULT_POOL
    return limited_consumer(pool, limit_token(item.definition_id), item.priority)
