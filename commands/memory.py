"""The event store in this process's memory: the write side without a database.

For tests of command logic (no database, seconds), configured by
``DatabaseConfig.memory()`` (commands/persistence.py). It is the library's in-memory
(POPO) process recorder, one per store name: every service built from one config shares
that store, as replicas share a database, and a store lives as long as a service uses it.
Nothing outlives the process and there are no read models: never a store for ``serve``.
"""

from __future__ import annotations

import threading
import weakref

from eventsourcing.persistence import ProcessRecorder
from eventsourcing.popo import POPOFactory, POPOProcessRecorder

# A key of eventsourcing's environment (not an environment variable of ours): the store.
STORE_KEY = "TASKEXEC_MEMORY_STORE"

_stores: weakref.WeakValueDictionary[str, POPOProcessRecorder] = weakref.WeakValueDictionary()
_lock = threading.Lock()


class Factory(POPOFactory):
    """The library's POPO factory, with the process recorder of the store named in the
    environment (a fresh one when none is named)."""

    def process_recorder(self) -> ProcessRecorder:
        name = self.env.get(STORE_KEY)
        if not name:
            return POPOProcessRecorder()
        with _lock:
            recorder = _stores.get(name)
            if recorder is None:
                recorder = _stores[name] = POPOProcessRecorder()
            return recorder


def memory_env(name: str) -> dict[str, str]:
    """Entries of eventsourcing's environment for the in-memory store ``name``."""
    return {"PERSISTENCE_MODULE": f"{__name__}:Factory", STORE_KEY: name}
