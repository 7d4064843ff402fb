"""Wakes the projection runner when any process commits events: PostgreSQL ``LISTEN`` on
the channel the event store notifies, reconnecting after a failure (a poll remains the
safety net)."""

from __future__ import annotations

import logging
import threading

import psycopg

from projections.sql import statement

log = logging.getLogger("projections.runner")  # the runner's logger, as before


def listen_for_commits(
    conninfo: str, channel: str, wake: threading.Event, stop: threading.Event
) -> None:
    """Set ``wake`` on each notification on ``channel`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(statement("pg_listen").format(channel=channel))
                while not stop.is_set():
                    for _ in conn.notifies(timeout=0.5, stop_after=1):
                        wake.set()
        except psycopg.Error as exc:
            log.warning("projection LISTEN: %r; reconnecting", exc)
            stop.wait(1.0)
