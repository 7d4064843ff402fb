"""Unit tests of how a worker gathers its reports (workers/report_batch.py) and how the
results consumer reads them back (workers/protocol.decode_reports). The publisher is a
stand-in here; tests/integration/test_execution.py runs the real path."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec
import pytest

from workers import report_batch
from workers.bridge import results
from workers.protocol import RESULTS_SUBJECT, Report, decode_reports, encoder
from workers.report_batch import ReportBatcher, batch_msg_id


def report(n: int, kind: str = "completed", output: Any = None) -> Report:
    return Report(
        task_id=f"task-{n}",
        attempt=1,
        kind=kind,
        worker="w",
        at="2026-12-06T00:00:00Z",
        output=output if output is not None else {"n": n},
    )


class FakeJetStream:
    """Records what is published; answers each publish with an ack future it controls."""

    def __init__(self, fail: Exception | None = None, answer: bool = True) -> None:
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []
        self.fail = fail
        self.answer = answer

    async def publish(self, subject: str, body: bytes, headers: dict[str, Any]) -> Any:
        self.published.append((subject, body, headers))
        if self.fail is not None:
            raise self.fail
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.answer:
            ack.set_result(object())
        return ack


def send(batcher: ReportBatcher, r: Report) -> asyncio.Future[None]:
    return batcher.send(r, encoder.encode(r))


async def test_reports_of_one_turn_go_as_one_message_and_come_back_whole() -> None:
    js = FakeJetStream()
    batcher = ReportBatcher(js.publish)
    reports = [report(n) for n in range(3)]
    stored = [send(batcher, r) for r in reports]
    await asyncio.gather(*stored)
    ((subject, body, headers),) = js.published
    assert subject == RESULTS_SUBJECT
    assert json.loads(body)[1]["taskId"] == "task-1"
    assert decode_reports(body) == reports
    assert headers == {"Nats-Msg-Id": batch_msg_id(reports)}
    assert batch_msg_id(reports) == batch_msg_id(list(reports))  # stable: a repeat is dropped
    assert batch_msg_id(reports) != batch_msg_id(reports[:2])


async def test_a_lone_report_goes_as_the_single_object_it_always_was() -> None:
    js = FakeJetStream()
    batcher = ReportBatcher(js.publish)
    await send(batcher, report(1))
    await asyncio.sleep(0)
    await send(batcher, report(2))  # a later turn: a message of its own
    assert [json.loads(body)["taskId"] for _, body, _ in js.published] == ["task-1", "task-2"]
    assert js.published[0][2] == {"Nats-Msg-Id": report(1).msg_id}
    assert decode_reports(js.published[1][1]) == [report(2)]


async def test_large_reports_are_spread_over_messages_the_server_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report_batch, "MAX_BATCH_BYTES", 1300)
    js = FakeJetStream()
    batcher = ReportBatcher(js.publish)
    reports = [report(n, output={"blob": "x" * 400}) for n in range(5)]
    await asyncio.gather(*(send(batcher, r) for r in reports))
    assert all(len(body) <= 1300 for _, body, _ in js.published)
    assert len(js.published) == 3  # two per message, then the last alone
    assert [r for _, body, _ in js.published for r in decode_reports(body)] == reports


async def test_a_refused_message_fails_every_report_in_it() -> None:
    js = FakeJetStream(fail=ConnectionError("gone"))
    batcher = ReportBatcher(js.publish)
    stored = [send(batcher, report(n)) for n in range(2)]
    results = await asyncio.gather(*stored, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_an_ack_that_never_comes_fails_them_in_time() -> None:
    js = FakeJetStream(answer=False)
    batcher = ReportBatcher(js.publish, timeout_s=0.05)
    stored = send(batcher, report(1))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stored, 2)
    await batcher.close()


async def test_a_worker_going_away_cancels_what_waits_for_its_ack() -> None:
    js = FakeJetStream(answer=False)
    batcher = ReportBatcher(js.publish)
    stored = send(batcher, report(1))
    await asyncio.sleep(0.01)  # published, waiting for the ack
    for task in list(batcher._flushing):
        task.cancel()
    await batcher.close()
    assert stored.cancelled()


def test_what_is_neither_a_report_nor_a_list_of_them_is_refused() -> None:
    for data in (b"", b"{}", b"[{}]", b"[1]", b"not json", b'{"taskId": 1}'):
        with pytest.raises(msgspec.DecodeError):
            decode_reports(data)
    assert decode_reports(b" [] ") == []


class PulledMsg:
    """What the results consumer reads of a pulled message."""

    def __init__(self, sequence: int, data: bytes) -> None:
        self.data = data
        self.metadata = type("Meta", (), {"sequence": type("Seq", (), {"stream": sequence})})


def test_the_results_consumer_records_a_backlog_in_bounded_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(results, "MAX_REPORTS_PER_BATCH", 4)

    def real(n: int) -> Report:  # task ids the service can read
        return msgspec.structs.replace(report(n), task_id=str(uuid.UUID(int=n)))

    gathered = b"[" + b",".join(encoder.encode(real(n)) for n in range(3)) + b"]"
    msgs = [
        PulledMsg(10, gathered),  # 3
        PulledMsg(11, encoder.encode(real(3))),  # 4: still fits
        PulledMsg(12, b"garbage"),  # counts as empty (logged)
        PulledMsg(13, gathered),  # would make 7: a new transaction
        PulledMsg(14, gathered),  # 6 > 4: another; a message is never split
    ]
    chunks = results._chunks(msgs)  # type: ignore[arg-type]
    assert [([m.metadata.sequence.stream for m in c], len(r)) for c, r, _ in chunks] == [
        ([10, 11, 12], 4),
        ([13], 3),
        ([14], 3),
    ]
    assert chunks[0][1][3].task_id == uuid.UUID(int=3)  # decoded as RecordReports


class AckedMsg(PulledMsg):
    """A pulled message that notes what the consumer answered."""

    def __init__(self, sequence: int, data: bytes, answers: list[tuple[str, int]]) -> None:
        super().__init__(sequence, data)
        self._sequence = sequence
        self._answers = answers

    async def ack(self) -> None:
        self._answers.append(("ack", self._sequence))

    async def in_progress(self) -> None:
        self._answers.append(("progress", self._sequence))


class CountingService:
    def record_reports(self, reports: list[Any]) -> int:
        return len(reports)


async def test_a_long_batch_keeps_its_later_messages_from_being_redelivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each chunk is acked once recorded; while a backlog takes longer than a third of
    the ack wait, the messages still waiting get a progress signal (else JetStream
    would deliver them again meanwhile)."""
    monkeypatch.setattr(results, "MAX_REPORTS_PER_BATCH", 1)
    monkeypatch.setattr(results, "RESULTS_ACK_WAIT_S", 0.0)  # every chunk is "long"
    answers: list[tuple[str, int]] = []

    def one(n: int) -> bytes:
        return encoder.encode(msgspec.structs.replace(report(n), task_id=str(uuid.UUID(int=n))))

    msgs = [AckedMsg(n, one(n), answers) for n in (1, 2, 3)]
    consumer = object.__new__(results.ResultsConsumer)
    consumer._service = CountingService()  # type: ignore[assignment]
    consumer._on_recorded = lambda: None
    consumer._stopping = asyncio.Event()
    await consumer._record(msgs)  # type: ignore[arg-type]
    assert answers == [
        ("ack", 1),
        ("progress", 2),
        ("progress", 3),
        ("ack", 2),
        ("progress", 3),
        ("ack", 3),
    ]
