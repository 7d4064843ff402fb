"""Which of a batch of tasks are marked cancelled: one request for the whole batch.

Before it starts an attempt a worker looks its task up in the TASK_CANCELLED bucket (a
cancel that came before the start means the handler must not run at all). One direct get
per task was a quarter of the worker's CPU for a quick task, and a request the server
answers each time. nats-server 2.11 and later answer a batched direct get
(``multi_last``: the last message of each of many subjects, then an end-of-batch
status) on the bucket's stream; this asks once per pulled batch. An older server answers
such a request with an error status (408 "Empty Request" on 2.9); then every lookup goes
the old way, one key at a time, for the rest of the process's life.

A marker deleted or purged (a ``KV-Operation`` header) does not count, as for the
bucket's own ``get``. A marker holds the ``taskversion`` of its Cancelled event (0 when
it predates that field): a task requeued later runs all the same (workers/admission.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from workers.protocol import CANCEL_BUCKET, cancel_subject

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 5.0
MAX_SUBJECTS = 256  # per request: far below the server's limit on a batch
_KEY_PREFIX = cancel_subject("")
_END_OF_BATCH = "204"
_NOTHING_FOUND = "404"


class CancelMarkers:
    """Looks up cancel markers for many tasks at once (see the module's docstring)."""

    def __init__(
        self,
        nc: Client,
        bucket: KeyValue,
        api_subject: str = f"$JS.API.DIRECT.GET.KV_{CANCEL_BUCKET}",
        timeout_s: float = LOOKUP_TIMEOUT_S,
    ) -> None:
        self._nc = nc
        self._bucket = bucket
        self._api_subject = api_subject
        self._timeout_s = timeout_s
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self._numbers = 0
        self._reply: _Reply | None = None
        self.batched = True  # False once the server has refused a batched request

    async def marked(self, task_ids: Sequence[str]) -> set[str]:
        """The ids among ``task_ids`` whose task is marked cancelled (``versions``)."""
        return set(await self.versions(task_ids))

    async def versions(self, task_ids: Sequence[str]) -> dict[str, int]:
        """The ids among ``task_ids`` whose task is marked cancelled, each with its
        marker's ``taskversion`` (0: not recorded). Raises TimeoutError (or the server's
        error) when the bucket cannot be read: the caller must not start those tasks
        then."""
        if not task_ids:
            return {}
        async with self._lock:
            if self.batched:
                found: dict[str, int] = {}
                for start in range(0, len(task_ids), MAX_SUBJECTS):
                    chunk = task_ids[start : start + MAX_SUBJECTS]
                    answer = await self._batched(chunk)
                    if answer is None:  # an older server: one key at a time from now on
                        self.batched = False
                        log.info("nats-server has no batched direct gets: one get per task")
                        break
                    found.update(answer)
                else:
                    return found
            found = {}
            for task_id in task_ids:
                version = await self._one(task_id)
                if version is not None:
                    found[task_id] = version
            return found

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _batched(self, task_ids: Sequence[str]) -> dict[str, int] | None:
        """The marked ids and their versions, or None when the server does not know
        batched direct gets."""
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        self._numbers += 1
        reply = self._reply = _Reply(self._numbers)
        body = {"multi_last": [cancel_subject(task_id) for task_id in task_ids]}
        try:
            await self._nc.publish(
                self._api_subject,
                json.dumps(body).encode(),
                reply=f"{self._inbox}.{reply.number}",
            )
            return await asyncio.wait_for(reply.done, self._timeout_s)
        finally:
            self._reply = None

    async def _on_reply(self, msg: Msg) -> None:
        reply = self._reply
        if reply is None or msg.subject.rpartition(".")[2] != str(reply.number):
            return  # an answer to a request given up on
        reply.take(msg)

    async def _one(self, task_id: str) -> int | None:
        """The task's marker version, None when it has no marker."""
        try:
            entry = await asyncio.wait_for(self._bucket.get(task_id), self._timeout_s)
        except KeyNotFoundError:  # also a deleted or purged marker
            return None
        return marker_version(entry.value)


def marker_version(body: bytes | None) -> int:
    """The ``taskversion`` a marker holds; 0 when it has none (or is not readable)."""
    try:
        version = json.loads(body or b"{}").get("taskversion", 0)
    except (ValueError, AttributeError):
        return 0
    return version if isinstance(version, int) else 0


class _Reply:
    """The messages answering one batched request, until its end-of-batch status."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.marked: dict[str, int] = {}
        self.done: asyncio.Future[dict[str, int] | None] = (
            asyncio.get_running_loop().create_future()
        )

    def take(self, msg: Msg) -> None:
        if self.done.done():
            return
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            subject = headers.get("Nats-Subject", "")
            if subject.startswith(_KEY_PREFIX) and headers.get("KV-Operation") is None:
                self.marked[subject[len(_KEY_PREFIX) :]] = marker_version(msg.data)
        elif status in (_END_OF_BATCH, _NOTHING_FOUND):
            self.done.set_result(self.marked)
        else:  # 408 "Empty Request" (no multi_last before 2.11), 400, 503 no responders
            self.done.set_result(None)
