"""Task ids drawn in blocks: still random version-4 UUIDs, never repeated, thread-safe."""

from __future__ import annotations

import os
import threading
from uuid import UUID

from commands.ids import RandomIds


def test_ids_are_random_version_4_uuids() -> None:
    ids = RandomIds()
    drawn = [ids() for _ in range(2000)]  # several draws of the block
    assert all(
        isinstance(i, UUID) and i.version == 4 and i.variant == "specified in RFC 4122"
        for i in drawn
    )
    assert len(set(drawn)) == len(drawn)


def test_threads_never_get_the_same_id() -> None:
    ids = RandomIds()
    found: list[list[UUID]] = [[] for _ in range(8)]

    def draw(into: list[UUID]) -> None:
        into.extend(ids() for _ in range(1000))

    threads = [threading.Thread(target=draw, args=(box,)) for box in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for box in found for i in box]
    assert len(every) == 8000 and len(set(every)) == 8000


def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    ids = RandomIds()
    ids()  # this thread now holds a block the child would otherwise inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, b"".join(ids().bytes for _ in range(10)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(ids().bytes for _ in range(10))
    assert len(child) == 160
    assert {child[i : i + 16] for i in range(0, 160, 16)}.isdisjoint(
        parent[i : i + 16] for i in range(0, 160, 16)
    )
