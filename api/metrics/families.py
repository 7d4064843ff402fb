"""The families ``serve`` counts as things happen, in a registry of its own.

Labels are bounded: ``route`` is a route's template (``/api/v1/tasks/{taskId}``),
never a raw path; ``method`` one of the HTTP methods (anything else is ``OTHER``);
``definition`` a registered definition's id, never a task id. Each label set's child is
looked up once and kept: a request costs two dictionary look-ups and two updates.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Tasks take milliseconds to hours: run and queue-wait times share these.
TASK_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0),
)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def registry() -> CollectorRegistry:
    """A registry of one process's own (never the library's global one), without the
    ``_created`` series (a second series per counter that no dashboard here reads)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series
    return CollectorRegistry()


class ServeMetrics:
    """One ``serve``'s families; ``tap`` (api/metrics/tap.py) and the HTTP layer
    (api/metrics/http.py) feed them."""

    def __init__(self) -> None:
        self.registry = reg = registry()
        ProcessCollector(registry=reg)  # CPU, memory, open files: read at scrape time
        self._requests = Counter(
            "taskexec_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=reg,
        )
        self._durations = Histogram(
            "taskexec_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=reg,
        )
        self._submitted = Counter(
            "taskexec_tasks_submitted",
            "Tasks submitted, by definition",
            ["definition"],
            registry=reg,
        )
        self._finished = Counter(
            "taskexec_tasks_finished",
            "Tasks that reached a final status, by definition and status",
            ["definition", "status"],
            registry=reg,
        )
        self._attempts = Counter(
            "taskexec_task_attempts",
            "Attempts that ended, by definition and outcome "
            "(completed, failed, timed_out, cancelled)",
            ["definition", "outcome"],
            registry=reg,
        )
        self._run = Histogram(
            "taskexec_task_run_seconds",
            "Each attempt's time from its start to its end, by definition",
            ["definition"],
            buckets=TASK_BUCKETS,
            registry=reg,
        )
        self._wait = Histogram(
            "taskexec_task_queue_wait_seconds",
            "Time from a task's submission to its first start, by definition",
            ["definition"],
            buckets=TASK_BUCKETS,
            registry=reg,
        )
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._children: dict[tuple[str, ...], Counter | Histogram] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request."""
        if method not in METHODS:
            method = "OTHER"
        key = (method, route, status)
        children = self._http.get(key)
        if children is None:
            children = self._http[key] = (
                self._requests.labels(method, route, str(status)),
                self._durations.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def submitted(self, definition: str, count: int) -> None:
        self._counter("s", self._submitted, definition).inc(count)

    def finished(self, definition: str, status: str, count: int) -> None:
        self._counter("f", self._finished, definition, status).inc(count)

    def attempts(self, definition: str, outcome: str, count: int) -> None:
        self._counter("a", self._attempts, definition, outcome).inc(count)

    def ran(self, definition: str, seconds: float) -> None:
        self._histogram("r", self._run, definition).observe(seconds)

    def waited(self, definition: str, seconds: float) -> None:
        self._histogram("w", self._wait, definition).observe(seconds)

    def _counter(self, family: str, counter: Counter, *labels: str) -> Counter:
        child = self._children.get((family, *labels))
        if child is None:
            child = self._children[(family, *labels)] = counter.labels(*labels)
        assert isinstance(child, Counter)
        return child

    def _histogram(self, family: str, histogram: Histogram, *labels: str) -> Histogram:
        child = self._children.get((family, *labels))
        if child is None:
            child = self._children[(family, *labels)] = histogram.labels(*labels)
        assert isinstance(child, Histogram)
        return child
