"""The Celery application both sides load: the client (``CeleryPeer``) and the worker.

Settings are arguments rather than module constants so that one function builds the
client's app and, through ``celery_worker``, the worker's, and the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from bench.peers.orders import TASK_NAME, calculate_order_total


def make_app(url: str, *, prefetch_multiplier: int = 64, acks_late: bool = False) -> Celery:
    """A Celery app on one Redis database, used as broker *and* result backend.

    ``prefetch_multiplier``: the Celery optimizing guide's advice for many short tasks is a
    large value ("64, or 128"); the default 4 starves prefork children between round trips.
    ``acks_late=False`` is Celery's default (the message is acked as the task starts).
    """
    app = Celery("bench_peers", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=False,  # the client must see every result come back
        worker_prefetch_multiplier=prefetch_multiplier,
        task_acks_late=acks_late,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    app.task(name=TASK_NAME)(calculate_order_total_task)
    return app


def calculate_order_total_task(order: dict[str, Any]) -> dict[str, float]:
    """The task body: one module-level function, registered on every app ``make_app`` builds
    (a nested function would be a new callable per app, which Celery warns about)."""
    return calculate_order_total(order)
