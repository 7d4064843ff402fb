"""A worker's Prometheus metrics (served by workers/metrics_server.py on
``--metrics-port``), fed by its attempts (workers/attempt.py, ``AttemptObserver``).

- ``taskexec_worker_slots``: attempts the worker runs at once at most (``--concurrency``);
- ``taskexec_worker_attempts_running``: attempts running now;
- ``taskexec_worker_attempts_total{definition,outcome}``: attempts this worker ended
  (completed, failed, timed_out, cancelled);
- ``taskexec_worker_handler_seconds{definition}``: how long each attempt's handler ran
  (to its result, its timeout or its cancel).

``definition`` comes from the work items, which the service makes from registered
definitions; past ``MAX_DEFINITIONS`` distinct ones (work published by something else)
the rest are counted as ``other``, so no sender can grow the label set without bound.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

from workers.attempt import Result

BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    *(5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
MAX_DEFINITIONS = 200
TIMEOUT = "TIMEOUT"  # the error type of an attempt stopped at its timeout (workers/attempt.py)


def outcome(result: Result | None) -> str:
    if result is None:
        return "cancelled"
    if result.kind == "completed":
        return "completed"
    return "timed_out" if result.error_type == TIMEOUT else "failed"


class WorkerMetrics:
    """One worker's families, in a registry of its own."""

    def __init__(self, concurrency: int) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series
        self.registry = reg = CollectorRegistry()
        ProcessCollector(registry=reg)
        Gauge(
            "taskexec_worker_slots", "Attempts this worker runs at once at most", registry=reg
        ).set(concurrency)
        self._running = Gauge(
            "taskexec_worker_attempts_running", "Attempts running now", registry=reg
        )
        self._attempts = Counter(
            "taskexec_worker_attempts",
            "Attempts this worker ended, by definition and outcome",
            ["definition", "outcome"],
            registry=reg,
        )
        self._seconds = Histogram(
            "taskexec_worker_handler_seconds",
            "Time each attempt's handler ran, by definition",
            ["definition"],
            buckets=BUCKETS,
            registry=reg,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._definitions: set[str] = set()

    def started(self) -> None:
        self._running.inc()

    def ended(self, definition: str, result: Result | None, seconds: float) -> None:
        self._running.dec()
        if definition not in self._definitions:
            if len(self._definitions) >= MAX_DEFINITIONS:
                definition = "other"
            self._definitions.add(definition)
        key = (definition, outcome(result))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._attempts.labels(*key),
                self._seconds.labels(definition),
            )
        children[0].inc()
        children[1].observe(seconds)
