"""The wire contract between the service and its workers over NATS JetStream.

Streams and subjects are a public contract (see docs/events.md):
- ``TASK_EVENTS``  ``tasks.events.<type>``  CloudEvents 1.0, Limits retention (subscribers)
- ``TASK_WORK``    ``tasks.work.<priority>`` work items of the default executor pool,
  ``tasks.work.<pool>.<priority>`` those of any other pool; WorkQueue retention (workers pull)
- ``TASK_RESULTS`` ``tasks.results``         worker reports, WorkQueue retention (results consumer)

``TASK_WORK`` also holds ``tasks.scheduled.<task>``: a scheduled task's first work item,
which JetStream itself publishes to its work subject when it is due (message schedules,
nats-server 2.12+); and it republishes the headers of every work item it stores to
``tasks.queued.[<pool>.]<priority>`` (core NATS), which wakes idle workers of that pool.

Executor pools (domain/executor_pool.py): the default pool, ``standard-executor``, keeps
the subjects and consumers (``work-<priority>``) that came before pools, so work stored
by an older version runs unchanged and older workers keep serving it; every other pool
has its own (``tasks.work.<pool>.<priority>``, ``work-<pool>-<priority>``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain.executor_pool import DEFAULT_POOL

EVENTS_STREAM = "TASK_EVENTS"
WORK_STREAM = "TASK_WORK"
RESULTS_STREAM = "TASK_RESULTS"
EVENTS_SUBJECT_PREFIX = "tasks.events."
WORK_SUBJECT_PREFIX = "tasks.work."
RESULTS_SUBJECT = "tasks.results"
SCHEDULE_SUBJECT_PREFIX = "tasks.scheduled."  # a scheduled task's work until it is due
QUEUED_SUBJECT_PREFIX = "tasks.queued."  # core NATS: a work item was stored (headers only)
RESULTS_CONSUMER = "results"
CANCEL_BUCKET = "TASK_CANCELLED"  # KV: task id -> cancelled (workers check before a start)
CANCELLED_SUBJECT = "tasks.events.cancelled"  # broadcast: running attempts stop
PRIORITIES = ("critical", "high", "medium", "low")  # probe order, highest first


def cancel_subject(task_id: str) -> str:
    """The KV subject that marks a task cancelled."""
    return f"$KV.{CANCEL_BUCKET}.{task_id}"


def _queue_tail(priority: str, pool: str | None) -> str:
    """``<priority>`` in the default pool, ``<pool>.<priority>`` in any other."""
    if pool is None or pool == DEFAULT_POOL:
        return priority.lower()
    return f"{pool}.{priority.lower()}"


def work_subject(priority: str, pool: str | None = None) -> str:
    """Where ``pool``'s work of ``priority`` waits (None: the default pool)."""
    return f"{WORK_SUBJECT_PREFIX}{_queue_tail(priority, pool)}"


def queued_subject(priority: str, pool: str | None = None) -> str:
    """The core-NATS subject announcing ``pool``'s new work of ``priority``."""
    return f"{QUEUED_SUBJECT_PREFIX}{_queue_tail(priority, pool)}"


def announced_queue(subject: str) -> tuple[str, str] | None:
    """(pool, priority) of an announcement's subject; None if it is not one."""
    parts = subject[len(QUEUED_SUBJECT_PREFIX) :].split(".")
    if not subject.startswith(QUEUED_SUBJECT_PREFIX) or parts[-1] not in PRIORITIES:
        return None
    if len(parts) == 1:
        return DEFAULT_POOL, parts[0]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def schedule_subject(task_id: str) -> str:
    """Where a scheduled task's work waits: one schedule per task (a schedule published
    again on the subject replaces the one before: it fires once)."""
    return f"{SCHEDULE_SUBJECT_PREFIX}{task_id}"


def schedule_headers(
    due: str, priority: str, pool: str | None = None, target: str | None = None
) -> dict[str, str]:
    """JetStream message-schedule headers: publish the body to ``target`` (by default
    ``pool``'s work subject of ``priority``) at ``due`` (RFC 3339, UTC)."""
    return {
        "Nats-Schedule": f"@at {due}",
        "Nats-Schedule-Target": target or work_subject(priority, pool),
    }


def work_consumer(priority: str, pool: str | None = None) -> str:
    """The durable consumer of ``pool``'s work of ``priority``: ``work-<priority>`` in the
    default pool, ``work-<pool>-<priority>`` in any other."""
    if pool is None or pool == DEFAULT_POOL:
        return f"work-{priority.lower()}"
    return f"work-{pool}-{priority.lower()}"


def consumer_queue(name: str) -> tuple[str, str] | None:
    """(pool, priority) of a work consumer's name; None if it is not one."""
    head, _, priority = name.rpartition("-")
    if not name.startswith("work-") or priority not in PRIORITIES:
        return None
    return (DEFAULT_POOL, priority) if head == "work" else (head[len("work-") :], priority)


def work_msg_id(task_id: str, attempt: int, again: str = "", requeued: int = 0) -> str:
    """``Nats-Msg-Id`` of an attempt's work: ``<task>:<attempt>:work``, and a suffix when
    the service publishes it again (the first copy was lost or never delivered) or after
    a requeue (``requeued-<version>``: the same attempt number may have had work before
    the task was cancelled, within JetStream's duplicate window)."""
    parts = [f"requeued-{requeued}"] if requeued else []
    if again:
        parts.append(again)
    suffix = "-".join(parts)
    return f"{task_id}:{attempt}:work{':' + suffix if suffix else ''}"


def work_identity(msg_id: str | None) -> tuple[str, int] | None:
    """(task id, attempt) from a work message's ``Nats-Msg-Id``; None if it is not one."""
    parts = (msg_id or "").split(":")
    if len(parts) < 3 or parts[2] != "work" or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


class WorkItem(msgspec.Struct, rename="camel", frozen=True):
    """One attempt of one task, as a worker receives it."""

    task_id: str
    attempt: int
    task_type: str
    definition_id: str
    input: dict[str, Any]
    timeout_ms: int
    priority: str
    handler: str | None = None
    endpoint: str | None = None
    not_before: str | None = None  # RFC 3339: a retry that must not start earlier
    isolation: str = "thread"  # "thread" | "process" (a process can be killed at once)
    redelivery: int = 0  # times the service published this attempt's work again
    # The task version of the requeue this work follows (0: none): a cancel from before
    # it (a marker or a broadcast of a lower ``taskversion``, a relay republishing, say)
    # does not stop it (workers/admission.py, workers/executor.py).
    requeued: int = 0
    # The task's W3C trace context (``traceparent``, ``tracestate``): the attempt's span
    # continues its trace (workers/tracing.py). None: the task has none.
    trace: dict[str, str] | None = None
    # An INTEGRATION task's ``executionConfig.auth`` as its definition gives it: the names
    # of the worker's environment variables holding the credentials, never a secret
    # (domain/integration_auth.py). None: the call carries no credentials.
    auth: dict[str, Any] | None = None
    # The executor pool whose workers take it (``executionConfig.executor``); None: the
    # default pool. Read by the service when it publishes the work again (lost work).
    executor: str | None = None
    # The definition's requests (workers/capacity.py: a worker with ``--cpus``/``--memory``
    # admits what fits): millicores and bytes; ``memory`` is also the hard limit of an
    # attempt that runs in a child process. None: no request.
    cpu: int | None = None
    memory: int | None = None
    # ``LOW``: as ``isolation`` says; ``MEDIUM``: a child process; ``HIGH``: a child with a
    # clean environment (``allow_env``: the worker's variables it may see), an empty
    # directory of its own and, on a root worker, another user (workers/sandbox.py).
    security_level: str = "LOW"
    allow_env: list[str] | None = None
    # The definition's ``executionConfig.maxConcurrency`` when the task was submitted
    # (None: no limit): its work waits on the definition's own subjects and a worker
    # holds one of its slots while it runs (workers/limited_queues.py).
    max_concurrency: int | None = None


class WorkLimit(msgspec.Struct, frozen=True):
    """A limited definition's work in a batch the relay publishes (not sent): its queues
    and slots are made the first time (workers/bridge/pool_consumers.py). ``current``: the
    limit is the definition's as it is now (a submit's work), so a changed one is applied;
    a retry's or a requeue's carries the one of its submit, which does not change it."""

    pool: str
    definition_id: str
    max_concurrency: int
    current: bool = False


class Report(msgspec.Struct, rename="camel", frozen=True):
    """A worker's report on one attempt: started, completed or failed.

    ``started_at`` (on a completed or failed report): the attempt also began then, and
    no started report was sent for it. An attempt that ends within moments of its start
    is reported once, not twice (workers/executor.py); the service records both events.
    """

    task_id: str
    attempt: int
    kind: str
    worker: str
    at: str  # RFC 3339, UTC
    output: Any = None
    error_type: str = ""
    error_message: str = ""
    retryable: bool = True
    started_at: str | None = None  # RFC 3339, UTC
    # A failed handler's traceback, at most 8 KB of UTF-8 (domain/tracebacks.py). Absent
    # from older workers' reports; a service older than this ignores it.
    traceback: str | None = None
    # The attempt span's trace context: recording the report is a span under it.
    trace: dict[str, str] | None = None

    @property
    def msg_id(self) -> str:
        """De-duplication id: one report of each kind per task, attempt and worker (a
        redelivered attempt runs again on another worker, and its reports must count)."""
        return f"{self.task_id}:{self.attempt}:{self.kind}:{self.worker}"


class CloudEvent(msgspec.Struct, frozen=True):
    """CloudEvents 1.0, JSON structured mode, with extension attributes: ``taskversion``,
    ``position`` and ``eventhash`` (the event's hash in the store's hash chain: a witness
    a subscriber can keep and later compare with ``taskexec audit export``), and the
    distributed-tracing extension's ``traceparent`` and ``tracestate`` when the task has
    a trace context (absent otherwise)."""

    id: str
    source: str
    type: str
    subject: str
    time: str
    data: dict[str, Any]
    taskversion: int
    position: int
    specversion: str = "1.0"
    datacontenttype: str = "application/json"
    eventhash: str | None = None
    traceparent: str | msgspec.UnsetType = msgspec.UNSET
    tracestate: str | msgspec.UnsetType = msgspec.UNSET


class Outgoing(msgspec.Struct, frozen=True):
    """One message the relay publishes: subject, de-duplication id, body; ``trace``, the
    task's trace context (not sent: its publish span's parent, workers/bridge/relay.py);
    ``headers``, sent besides ``Nats-Msg-Id`` (a schedule's: ``schedule_headers``);
    ``pool``, a work item's executor pool when it is not the default one (not sent: the
    relay makes that pool's consumers the first time, workers/bridge/pool_consumers.py);
    ``limit``, a limited definition's work (not sent: its queues and slots, the same)."""

    subject: str
    msg_id: str
    body: bytes
    trace: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    pool: str | None = None
    limit: WorkLimit | None = None


encoder = msgspec.json.Encoder()
work_decoder = msgspec.json.Decoder(WorkItem)
report_decoder = msgspec.json.Decoder(Report)
_reports_decoder = msgspec.json.Decoder(list[Report])
cloud_event_decoder = msgspec.json.Decoder(CloudEvent)


def decode_reports(data: bytes) -> list[Report]:
    """A message on ``tasks.results``: one report (a JSON object), or the reports a
    worker made at one moment (a JSON array of them: workers/report_batch.py).
    Raises msgspec.DecodeError (a ValueError) when it is neither."""
    if data.lstrip()[:1] == b"[":
        return _reports_decoder.decode(data)
    return [report_decoder.decode(data)]
