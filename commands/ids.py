"""Random task ids without a system call, or a lock, per id.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom``, a system call that releases the
GIL; in a busy process, getting the GIL back can wait behind other threads for up to the
switch interval. The same kernel randomness, drawn 4 KiB at a time, gives the same ids.
Each thread draws from a block of its own (a shared block needs a lock that threads
queue on), and a forked child starts with fresh blocks, so that it never hands out the
ids its parent will. Why, measured: docs/benchmarks.md ("Design measurements").
"""

from __future__ import annotations

import os
import threading
import weakref
from uuid import UUID

_IDS_PER_DRAW = 256
_every: weakref.WeakSet[RandomIds] = weakref.WeakSet()


class RandomIds:
    """A callable that returns random (version 4) UUIDs, as ``uuid.uuid4`` does."""

    def __init__(self) -> None:
        self._local = threading.local()
        _every.add(self)

    def __call__(self) -> UUID:
        local = self._local
        block: bytes = getattr(local, "block", b"")
        offset: int = getattr(local, "offset", 0)
        if offset >= len(block):
            block = local.block = os.urandom(16 * _IDS_PER_DRAW)
            offset = 0
        local.offset = offset + 16
        return UUID(bytes=block[offset : offset + 16], version=4)

    def _forget_blocks(self) -> None:
        self._local = threading.local()


def _after_fork_in_child() -> None:
    for ids in list(_every):
        ids._forget_blocks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
