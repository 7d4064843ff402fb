"""How a process's PostgreSQL connections are shared out (docs/operations.md, "PostgreSQL
connections"). One ``serve`` holds at most ``total`` (``TASKEXEC_DB_POOL_SIZE``, 8 by
default): PostgreSQL's ``max_connections`` (100 by default) is shared by every replica,
CLI run and neighbour, so each process must have a known, small share.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOTAL = 8
MIN_TOTAL = 5  # the fixed connections, one rate-limit connection, one per pool
CLI_TOTAL = 2  # taskexec apikey/verify/audit/history/projections rebuild: one per pool
MONITOR = 1  # the breaker's heartbeat, or its probe while the database is away
LOCKS = 1  # the relay's and the projection runner's advisory locks, on one connection
LISTEN_FROM = 10  # LISTEN for other replicas' commits only from this total on (else a poll)
TWO_RATE_LIMIT_FROM = 12


@dataclass(frozen=True)
class ConnectionBudget:
    """The connections of one ``serve``: a pool each for the event store and the read
    models, the rest fixed. Their sum is ``total``, at most."""

    total: int
    event_store: int  # commands (group commit, bulk), worker reports, relay, API keys
    read_models: int  # the projection runner's batches, GETs, /health
    rate_limits: int  # the shared counters (0: limits off, or kept in memory)
    listen: int  # LISTEN for commits of other processes (0: polled every 50 ms)
    monitor: int = MONITOR
    locks: int = LOCKS

    @classmethod
    def split(cls, total: int, rate_limits: bool) -> ConnectionBudget:
        """Share ``total`` out. ``rate_limits``: counted in PostgreSQL (API replicas)."""
        if total < MIN_TOTAL:
            raise ValueError(f"a serve needs at least {MIN_TOTAL} connections, not {total}")
        limits = 0 if not rate_limits else 2 if total >= TWO_RATE_LIMIT_FROM else 1
        listen = 1 if total >= LISTEN_FROM else 0
        rest = total - MONITOR - LOCKS - limits - listen
        # Writes are the heavier share: the committer, the results consumer, bulk
        # requests and the relay each hold one while they work.
        read = max(1, round(rest * 0.4))
        return cls(total, rest - read, read, limits, listen)

    @property
    def used(self) -> int:
        return (
            self.event_store
            + self.read_models
            + self.rate_limits
            + self.listen
            + self.monitor
            + self.locks
        )

    def describe(self) -> str:
        return (
            f"{self.used} of {self.total} PostgreSQL connections: event store "
            f"{self.event_store}, read models {self.read_models}, rate limits "
            f"{self.rate_limits}, LISTEN {self.listen}, monitor {self.monitor}, "
            f"locks {self.locks}"
        )
