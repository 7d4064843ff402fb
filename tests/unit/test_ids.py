"""Task ids drawn in blocks: still random version-4 UUIDs, never repeated, thread-safe."""

from __future__ import annotations

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
