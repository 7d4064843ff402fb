"""The Procrastinate application both sides load: the client (``ProcrastinatePeer``) and the
worker (through ``procrastinate_worker``), built by one function so they cannot drift."""

from __future__ import annotations

from typing import Any

from procrastinate import App, PsycopgConnector

from bench.peers.orders import TASK_NAME, calculate_order_total


def make_app(conninfo: str, *, pool_size: int, sync_task: bool = False) -> App:
    """An app on one database, with a connection pool of ``pool_size`` connections.

    The task is registered as an ``async def`` by default: the work is a few microseconds
    of pure Python, and a sync task would cost a thread hand-off per job
    (``sync_to_async``) for nothing; ``sync_task=True`` keeps the other shape measurable.
    """
    app = App(connector=PsycopgConnector(conninfo=conninfo, min_size=pool_size, max_size=pool_size))
    body = calculate_order_total_sync if sync_task else calculate_order_total_async
    app.task(name=TASK_NAME)(body)
    return app


async def calculate_order_total_async(order: dict[str, Any]) -> dict[str, float]:
    """The task body as the worker runs it by default (on its event loop)."""
    return calculate_order_total(order)


def calculate_order_total_sync(order: dict[str, Any]) -> dict[str, float]:
    """The same body as a sync task (Procrastinate runs it in a thread)."""
    return calculate_order_total(order)
