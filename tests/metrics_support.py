"""Reading a Prometheus text exposition in tests, with ``prometheus_client``'s parser."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample by (sample name, sorted labels): ``taskexec_tasks_submitted_total``,
    ``taskexec_task_run_seconds_count`` and so on."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when it is absent (a counter not yet counted)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def label_values(found: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in found if sample == name}


def eventually(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """``check()`` until it returns without an AssertionError (its value), or re-raise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(every)
