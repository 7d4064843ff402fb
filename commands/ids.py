"""Random task ids without a system call per id.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom``, a system call that releases the
GIL; in a busy process, getting the GIL back can wait behind other threads for up to the
switch interval (5 ms). At group-commit batch sizes that added up to a large part of a
batch's time. The same kernel randomness, drawn 4 KiB at a time, gives the same ids.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

_IDS_PER_DRAW = 256


class RandomIds:
    """A callable that returns random (version 4) UUIDs, as ``uuid.uuid4`` does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def __call__(self) -> UUID:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer = os.urandom(16 * _IDS_PER_DRAW)
                self._offset = 0
            raw = self._buffer[self._offset : self._offset + 16]
            self._offset += 16
        return UUID(bytes=raw, version=4)
