"""The shortcuts below libraries' public APIs, each behind one switch.

Each is on by default (the fast way) and has a plain way that keeps to the library's
public calls, so that a library upgrade or a suspected shortcut bug can be answered by
turning one off (docs/operations.md#fast-paths). ``api/settings.py`` reads the switches
from ``TASKEXEC_FAST_*``; this dataclass carries them to the code that takes them.

- ``nats_wire``: the relay publisher's frames and acks below nats-py
  (workers/bridge/nats_wire.py); plain: ``Client.publish`` and a subscription callback.
- ``pg_insert``: one PL/pgSQL statement per batch of events (commands/pg_recorder.py);
  plain: eventsourcing's own pipelined insert.
- ``task_cache``: tasks this process saved kept in memory (commands/task_cache.py);
  plain: every command loads its tasks from the event store.
- ``recent_events``: the log's head answered from this process's own events
  (commands/recent.py); plain: the log is read from the event store.
- ``gc_pause``: the collector paused over batches and the heap frozen at start
  (commands/gc_pause.py); plain: CPython's collector as configured by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

# The key of eventsourcing's environment (DatabaseConfig.eventsourcing_env) that carries
# the shortcuts turned off to TaskService: not an environment variable of ours.
ENV_KEY = "FAST_PATHS_OFF"


@dataclass(frozen=True)
class FastPaths:
    """One switch per shortcut; True: take it."""

    nats_wire: bool = True
    pg_insert: bool = True
    task_cache: bool = True
    recent_events: bool = True
    gc_pause: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    def off(self) -> tuple[str, ...]:
        """The names of the shortcuts turned off."""
        return tuple(name for name in self.names() if not getattr(self, name))

    def to_eventsourcing_env(self) -> dict[str, str]:
        """Entries for eventsourcing's environment: none when every shortcut is on."""
        off = self.off()
        return {ENV_KEY: ",".join(off)} if off else {}

    @classmethod
    def from_eventsourcing_env(cls, env: Mapping[str, str]) -> FastPaths:
        """What ``to_eventsourcing_env`` wrote (absent: every shortcut on). TaskService
        reads it from the environment it was given, never from ``os.environ``."""
        off = {name.strip() for name in env.get(ENV_KEY, "").split(",") if name.strip()}
        unknown = off - set(cls.names())
        if unknown:
            raise ValueError(f"{ENV_KEY}: unknown fast paths {sorted(unknown)}")
        return cls(**{name: False for name in off})
