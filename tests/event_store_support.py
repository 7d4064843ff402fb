"""Holds ``EventReader``'s scans (commands/event_reader.py) to what the library's public
recorder API reads, on any store."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.event_decoder import StoredRecord
from commands.service import TaskService


def assert_scans_are_the_librarys(service: TaskService, batch: int = 7) -> None:
    reader = service.event_reader
    expected = [
        StoredRecord(n.id, UUID(str(n.originator_id)), n.originator_version, n.topic, n.state)
        for n in service.recorder.select_notifications(start=1, limit=1_000_000)
    ]
    head = expected[-1].position
    assert (reader.head(), reader.count()) == (head, len(expected))
    assert [r for b in reader.by_position(batch=batch) for r in b] == expected
    between = [r for b in reader.by_position(3, until=head - 2, batch=batch) for r in b]
    assert between == [r for r in expected if 3 < r.position <= head - 2]

    by_key = sorted(expected, key=lambda r: (r.originator_id, r.version))
    assert [r for b in reader.by_aggregate(batch) for r in b] == by_key
    low, high = UUID(int=2**126), UUID(int=3 * 2**126)
    shard = [r for b in reader.by_aggregate(batch, low, high) for r in b]
    assert shard == [r for r in by_key if low <= r.originator_id < high]

    some, absent = expected[5].originator_id, uuid4()
    assert reader.aggregate(some) == [r for r in by_key if r.originator_id == some]
    assert reader.aggregate(absent) == []
    assert reader.existing([some, absent]) == {some}
    decoded = [(r.position, service.event_decoder.decode(r)[1]) for r in expected]
    assert decoded == service.read_log(0, 1_000_000)
