"""The public event contract against real messages: every lifecycle event type published
by the real relay to a real nats-server, read back from TASK_EVENTS and validated against
the JSON Schemas shipped in docs/schemas; the AsyncAPI document; the example subscriber
(run as its own process); replay by a late subscriber; TASK_EVENTS retention."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import nats
import pytest
import yaml
from jsonschema import Draft202012Validator
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from api.runtime import Runtime
from api.settings import Settings
from commands.messages import CancelTask, Outcome, RecordReport, RequeueTask, SubmitTask
from commands.public_events import PUBLIC_TYPES, event_id
from domain.task import Task
from domain.values import ANONYMOUS, Actor
from projections.audit.history import task_history
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import EVENTS_STREAM
from workers.streams import DUPLICATE_WINDOW_S, EVENTS_MAX_AGE_S, ensure_streams

ROOT = Path(__file__).parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
SUBSCRIBER = ROOT / "docs" / "examples" / "subscriber.py"
TYPE_PREFIX, TYPE_SUFFIX = "io.taskexec.task.", ".v1"
OPERATOR = Actor("ops@host", "operator")  # a person at ``taskexec tasks retry``
HANDLERS = textwrap.dedent(
    """
    class PaymentDeclined(Exception):
        pass

    def explode(payload, context):
        raise PaymentDeclined(f"card {payload['card']} declined")
    """
)
DEFINITIONS = {
    "once.json": {  # never retried
        "id": "once",
        "name": "Once",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "timeout": 5000,
        "retryPolicy": {"maxRetries": 0},
        "executionConfig": {"handler": "contract_handlers:explode"},
    },
    "approve.json": {"id": "approve", "name": "Approve", "type": "MANUAL", "version": "1.0.0"},
}


def public_name(cloud_event_type: str) -> str:
    return cloud_event_type.removeprefix(TYPE_PREFIX).removesuffix(TYPE_SUFFIX)


def schema_for(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return schema


@pytest.fixture
def definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "contract_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(code))
    directory = tmp_path / "definitions"
    directory.mkdir()
    for name, doc in DEFINITIONS.items():
        (directory / name).write_bytes(msgspec.json.encode(doc))
    return directory


@pytest.fixture
async def serve(
    database_url: str, nats_server: EmbeddedNatsServer, definitions: Path, tmp_path: Path
) -> AsyncIterator[Runtime]:
    """``serve``'s object graph: projection, relay, results consumer (no worker)."""
    settings = Settings(database_url=database_url, definitions_dir=definitions, var_dir=tmp_path)
    runtime = await asyncio.to_thread(Runtime.open, settings)
    await runtime.start_messaging(nats_server.url)
    yield runtime
    await runtime.stop_messaging()
    await asyncio.to_thread(runtime.close)


async def published(runtime: Runtime, timeout: float = 30) -> None:
    """Until the relay has published everything the store holds now."""
    head = runtime.service.recorder.max_notification_id() or 0
    outbox = Outbox(runtime.service)
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(outbox.position) < head:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"relay did not reach position {head}")
        await asyncio.sleep(0.02)


async def stream_messages(js: JetStreamContext) -> list[tuple[int, dict[str, Any], str]]:
    """Every message of TASK_EVENTS: (sequence, body, Nats-Msg-Id)."""
    info = await js.stream_info(EVENTS_STREAM)
    found = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(EVENTS_STREAM, sequence)
        assert msg.data is not None and msg.headers is not None
        found.append((sequence, json.loads(msg.data), msg.headers["Nats-Msg-Id"]))
    return found


def validate(body: dict[str, Any]) -> str:
    """Validate one real message against its schema; returns its public type name."""
    name = public_name(body["type"])
    assert (SCHEMAS / f"{name}.json").exists(), f"no schema for {body['type']}"
    schema = schema_for(name)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert errors == [], f"{body['type']}: {errors}"
    # The schema documents every field the message has (additions must be documented).
    assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])
    data_properties = schema["properties"]["data"]["properties"]
    assert set(body["data"]) <= set(data_properties), set(body["data"]) - set(data_properties)
    return name


def every_type_flow(runtime: Runtime) -> dict[str, UUID]:
    """One task per ending, through the command path (the results consumer's own call)."""

    def submit(definition: str, payload: dict[str, Any], tenant: str | None = None) -> UUID:
        cmd = SubmitTask(definition, payload, ANONYMOUS, "wf-contract", tenant=tenant)
        return runtime.submit(cmd).task_id

    ids = {
        "retried": submit("calculate-order-total", EXAMPLE_INPUT),  # maxRetries 3
        "failed": submit("once", {"card": "4242"}),
        "timed_out": submit("once", {"card": "1"}),
        "cancelled": submit("approve", {}, tenant="acme"),  # a tenant's task
        "requeued": submit("once", {"card": "5"}),
    }
    at = datetime.now(UTC)

    def report(task: str, attempt: int, kind: str, seconds: int, **extra: Any) -> RecordReport:
        return RecordReport(
            ids[task], attempt, kind, "w-1", at + timedelta(seconds=seconds), **extra
        )

    reports = [
        report("retried", 1, "started", 1),
        report("retried", 1, "failed", 2, error_type="ConnectionError", error_message="reset"),
        report("retried", 2, "started", 3),
        report("retried", 2, "completed", 4, output=EXAMPLE_OUTPUT),
        report("failed", 1, "started", 1),
        report("failed", 1, "failed", 2, error_type="PaymentDeclined", error_message="no"),
        report("timed_out", 1, "started", 1),
        report("timed_out", 1, "failed", 2, error_type="TIMEOUT", error_message="5000 ms"),
        report("requeued", 1, "started", 1),
        report("requeued", 1, "failed", 2, error_type="PaymentDeclined", error_message="no"),
    ]
    for one in reports:  # one batch each: attempt 2 after 1
        runtime.service.record_reports([one])
    runtime.cancel(CancelTask(ids["cancelled"], ANONYMOUS, reason="withdrawn", force=True))
    [requeued] = runtime.service.execute([RequeueTask(ids["requeued"], OPERATOR, "card renewed")])
    assert isinstance(requeued, Outcome), requeued
    return ids


async def test_every_public_event_type_on_the_stream_matches_its_schema(
    serve: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    ids = await asyncio.to_thread(every_type_flow, serve)
    await published(serve)
    nc = await nats.connect(nats_server.url)
    try:
        messages = await stream_messages(nc.jetstream())
    finally:
        await nc.close()

    names = [validate(body) for _, body, _ in messages]
    assert set(names) == {name for name, _ in PUBLIC_TYPES.values()}
    by_task: dict[str, list[dict[str, Any]]] = {}
    for _, body, msg_id in messages:
        assert msg_id == body["id"]
        by_task.setdefault(body["subject"], []).append(body)
    assert [public_name(b["type"]) for b in by_task[str(ids["retried"])]] == [
        "submitted", "started", "retry_scheduled", "started", "completed",
    ]  # fmt: skip
    assert [public_name(b["type"]) for b in by_task[str(ids["timed_out"])]][-1] == "timed_out"
    assert [public_name(b["type"]) for b in by_task[str(ids["failed"])]][-1] == "failed"
    requeued = by_task[str(ids["requeued"])]
    assert [public_name(b["type"]) for b in requeued][-2:] == ["failed", "requeued"]
    assert requeued[-1]["data"] == {
        "taskId": str(ids["requeued"]),
        "status": "PENDING",
        "attempt": 2,
        "reason": "card renewed",
        "actor": {"id": "ops@host", "kind": "operator"},
    }
    # A tenant's task names it in its submitted event, and only there; others do not.
    assert by_task[str(ids["cancelled"])][0]["data"]["tenant"] == "acme"
    tenanted = [b for bodies in by_task.values() for b in bodies if "tenant" in b["data"]]
    assert tenanted == [by_task[str(ids["cancelled"])][0]]
    cancelled = by_task[str(ids["cancelled"])][-1]
    assert cancelled["data"] == {
        "taskId": str(ids["cancelled"]),
        "status": "CANCELLED",
        "reason": "withdrawn",
        "force": True,
        "actor": {"id": "anonymous", "kind": "anonymous"},
    }
    # Store order: positions rise with the stream sequence; each task's versions count up.
    positions = [body["position"] for _, body, _ in messages]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for task_id, bodies in by_task.items():
        assert [b["taskversion"] for b in bodies] == list(range(1, len(bodies) + 1))
        # The event hash on the stream is the one in the store's chain (a witness).
        history = await asyncio.to_thread(task_history, serve.service, UUID(task_id))
        assert history is not None
        assert [b["eventhash"] for b in bodies] == [e["hash"] for e in history]
        assert [b["id"] for b in bodies] == [event_id(UUID(task_id), e["version"]) for e in history]


async def test_a_real_worker_flow_publishes_valid_events(
    serve: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    worker = Worker(nc, worker_id="contract-worker", concurrency=2)
    running = asyncio.create_task(worker.run())
    try:
        done = await asyncio.to_thread(
            serve.submit, SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
        )
        failed = await asyncio.to_thread(
            serve.submit, SubmitTask("once", {"card": "4242"}, ANONYMOUS)
        )
        manual = await asyncio.to_thread(serve.submit, SubmitTask("approve", {}, ANONYMOUS))
        await asyncio.to_thread(serve.cancel, CancelTask(manual.task_id, ANONYMOUS))
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            rows = [await asyncio.to_thread(serve.get_task, t.task_id) for t in (done, failed)]
            if all(r and r["status"] in ("COMPLETED", "FAILED") for r in rows):
                break
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.05)
        await published(serve)
        messages = await stream_messages(nc.jetstream())
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await nc.close()
    names = [validate(body) for _, body, _ in messages]
    assert {"submitted", "started", "completed", "failed", "cancelled"} <= set(names)
    completed = next(b for _, b, _ in messages if public_name(b["type"]) == "completed")
    assert completed["subject"] == str(done.task_id)
    assert completed["data"]["output"] == EXAMPLE_OUTPUT
    assert completed["data"]["actor"] == {"id": "contract-worker", "kind": "worker"}


def test_every_task_event_class_has_a_public_type_and_a_schema() -> None:
    """A new Task event must be published (PUBLIC_TYPES) and documented (a schema)."""
    event_classes = {
        value
        for name, value in vars(Task).items()
        if isinstance(value, type)
        and issubclass(value, Task.Event)
        and name not in ("Event", "Created")
    }
    assert event_classes - set(PUBLIC_TYPES) == set()
    for name, _ in PUBLIC_TYPES.values():
        schema = schema_for(name)
        assert schema["title"] == f"{TYPE_PREFIX}{name}{TYPE_SUFFIX}"
        assert schema["properties"]["type"] == {"const": schema["title"]}
        Draft202012Validator.check_schema(schema)
    documented = (ROOT / "docs" / "events.md").read_text()
    for name, _ in PUBLIC_TYPES.values():
        assert f"`tasks.events.{name}`" in documented, name
        assert f"schemas/{name}.json" in documented, name


def test_the_examples_in_events_md_match_their_schemas() -> None:
    """The documented messages are real ones: valid, with ``Z`` times and an actor kind
    that task events carry today."""
    text = (ROOT / "docs" / "events.md").read_text()
    examples = text[text.index("## Examples") : text.index("## Tamper evidence")]
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", examples, re.S)]
    assert {validate(body) for body in bodies} == {name for name, _ in PUBLIC_TYPES.values()}
    for body in bodies:
        assert body["data"]["actor"]["kind"] in ("jwt", "apikey", "worker", "system", "operator")
        assert body["time"].endswith("Z")
        assert body["data"].get("nextAttemptAt", "Z").endswith("Z")


def test_the_asyncapi_document_names_every_subject_and_type() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    names = {name for name, _ in PUBLIC_TYPES.values()}
    assert addresses == {f"tasks.events.{name}" for name in names}
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == {
        f"{TYPE_PREFIX}{n}{TYPE_SUFFIX}" for n in names
    }
    for message in messages.values():
        reference = message["payload"]["schema"]["$ref"]
        schema = json.loads((ROOT / "docs" / reference).read_text())
        assert schema["title"] == message["name"]
    for key, operation in document["operations"].items():
        assert operation["action"] == "receive", key
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"]


# -- replay, by a late subscriber and by the example ------------------------------------------


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


async def test_a_subscriber_started_after_1000_tasks_reads_all_their_events_in_order(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    runtime = await asyncio.to_thread(
        Runtime.open, Settings(database_url=database_url, var_dir=tmp_path)
    )
    await runtime.start_messaging(nats_server.url)
    try:

        def seed() -> list[UUID]:
            ids: list[UUID] = []
            for batch in range(10):
                commands = [
                    SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS, f"wf-{batch}")
                    for _ in range(100)
                ]
                outcomes = runtime.service.submit_many(commands)
                batch_ids = [o.task_id for o in outcomes if not isinstance(o, Exception)]
                assert len(batch_ids) == 100
                at = datetime.now(UTC)
                reports = [RecordReport(t, 1, "started", "w", at) for t in batch_ids] + [
                    RecordReport(t, 1, "completed", "w", at, EXAMPLE_OUTPUT) for t in batch_ids
                ]
                runtime.service.record_reports(reports)
                ids += batch_ids
            return ids

        ids = await asyncio.to_thread(seed)
        await published(runtime, timeout=120)
    finally:
        await runtime.stop_messaging()
        await asyncio.to_thread(runtime.close)

    # Only now does the subscriber start: from the beginning of the stream.
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            "tasks.events.>",
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        received: list[dict[str, Any]] = []
        while len(received) < 3000:
            msg = await sub.next_msg(timeout=10)
            received.append(json.loads(msg.data))
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.5)  # and nothing more
        await sub.unsubscribe()
    finally:
        await nc.close()

    expected = {event_id(t, v) for t in ids for v in (1, 2, 3)}
    assert [e["id"] for e in received if e["id"] in expected] == [e["id"] for e in received]
    assert {e["id"] for e in received} == expected
    positions = [e["position"] for e in received]
    assert positions == sorted(positions) and len(set(positions)) == 3000
    versions: dict[str, list[int]] = {}
    for event in received:
        versions.setdefault(event["subject"], []).append(event["taskversion"])
    assert len(versions) == 1000
    assert all(v == [1, 2, 3] for v in versions.values())
    kinds = {public_name(e["type"]) for e in received}
    assert kinds == {"submitted", "started", "completed"}


@pytest.fixture
async def stream_with_events(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[list[dict[str, Any]]]:
    """A stream holding the events of a few tasks (relay on a SQLite store)."""
    runtime = await asyncio.to_thread(
        Runtime.open, Settings(database_url=sqlite(tmp_path), var_dir=tmp_path)
    )
    await runtime.start_messaging(nats_server.url)
    try:
        for _ in range(3):
            outcome = await asyncio.to_thread(
                runtime.submit, SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
            )
            await asyncio.to_thread(runtime.cancel, CancelTask(outcome.task_id, ANONYMOUS))
            # Published before the next task exists, and apart in time: the stream's
            # times (what --since selects by) then follow the events' own.
            await published(runtime)
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop_messaging()
        await asyncio.to_thread(runtime.close)
    nc = await nats.connect(nats_server.url)
    try:
        yield [body for _, body, _ in await stream_messages(nc.jetstream())]
    finally:
        await nc.close()


def run_subscriber(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUBSCRIBER), "--server", server, "--idle-timeout", "2", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_the_example_subscriber_follows_the_stream_from_any_position(
    stream_with_events: list[dict[str, Any]], nats_server: EmbeddedNatsServer
) -> None:
    events = stream_with_events
    assert len(events) == 6
    run: Callable[..., subprocess.CompletedProcess[str]] = run_subscriber

    everything = lines(await asyncio.to_thread(run, nats_server.url, "--json"))
    assert [line["event"] for line in everything] == events
    assert [line["sequence"] for line in everything] == [1, 2, 3, 4, 5, 6]

    from_four = lines(await asyncio.to_thread(run, nats_server.url, "--json", "--from-seq", "4"))
    assert [line["sequence"] for line in from_four] == [4, 5, 6]

    since = events[2]["time"]
    later = lines(await asyncio.to_thread(run, nats_server.url, "--json", "--since", since))
    assert [line["event"]["id"] for line in later] == [
        e["id"] for e in events if e["time"] >= since
    ]
    assert 0 < len(later) < 6

    cancelled = lines(
        await asyncio.to_thread(
            run, nats_server.url, "--json", "--subject", "tasks.events.cancelled"
        )
    )
    assert [line["event"]["type"] for line in cancelled] == ["io.taskexec.task.cancelled.v1"] * 3

    two = await asyncio.to_thread(run, nats_server.url, "--count", "2")
    assert two.returncode == 0 and len(two.stdout.splitlines()) == 2
    assert "submitted" in two.stdout.splitlines()[0]
    assert "2 event(s), 0 duplicate(s) dropped" in two.stderr

    for wrong in (["--from-seq", "0"], ["--since", "yesterday"], ["--new", "--from-seq", "3"]):
        bad = await asyncio.to_thread(run, nats_server.url, *wrong)
        assert bad.returncode == 2, wrong
        assert bad.stdout == ""


async def test_the_example_subscriber_drops_a_republished_event_by_id(
    stream_with_events: list[dict[str, Any]], nats_server: EmbeddedNatsServer
) -> None:
    """Beyond JetStream's duplicate window a republished event is stored again (another
    Nats-Msg-Id here stands for 'after the window'); the subscriber drops it by ``id``."""
    nc = await nats.connect(nats_server.url)
    try:
        first = stream_with_events[0]
        ack = await nc.jetstream().publish(
            "tasks.events.submitted",
            json.dumps(first).encode(),
            headers={"Nats-Msg-Id": f"{first['id']}-after-the-window"},
        )
        assert ack.seq == 7 and not ack.duplicate
    finally:
        await nc.close()
    result = await asyncio.to_thread(run_subscriber, nats_server.url, "--json")
    assert [line["sequence"] for line in lines(result)] == [1, 2, 3, 4, 5, 6]
    assert "6 event(s), 1 duplicate(s) dropped" in result.stderr


# -- never lost while the store has them ------------------------------------------------------


async def test_events_recorded_while_nats_refuses_them_are_published_afterwards(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    runtime = await asyncio.to_thread(
        Runtime.open, Settings(database_url=database_url, var_dir=tmp_path)
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    relay = Relay(Outbox(runtime.service), JetStreamPublisher(nc), poll_interval=0.02)
    relaying = asyncio.create_task(relay.run())

    def submit() -> UUID:
        command = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
        return runtime.service.submit(command).task_id

    try:
        before = await asyncio.to_thread(submit)
        await published(runtime)
        await js.delete_stream(EVENTS_STREAM)  # publishing fails from now on
        during = [await asyncio.to_thread(submit) for _ in range(3)]
        relay.poke()
        await asyncio.sleep(1.5)  # the relay tries, fails, and keeps its position
        assert await asyncio.to_thread(Outbox(runtime.service).position) < (
            runtime.service.recorder.max_notification_id() or 0
        )
        await ensure_streams(js)
        after = await asyncio.to_thread(submit)
        await published(runtime)
        subjects = [body["subject"] for _, body, _ in await stream_messages(js)]
    finally:
        relay.stop()
        await asyncio.wait_for(relaying, 10)
        await nc.close()
        await asyncio.to_thread(runtime.close)
    assert str(before) not in subjects  # it went with the deleted stream
    assert subjects == [str(t) for t in [*during, after]]


# -- retention ----------------------------------------------------------------------------


async def test_serve_applies_the_configured_retention_and_workers_leave_it_alone(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await ensure_streams(js)  # a worker that starts first: the defaults
        info = await js.stream_info(EVENTS_STREAM)
        assert (info.config.max_age, info.config.max_bytes) == (EVENTS_MAX_AGE_S, -1)

        settings = Settings(
            database_url=sqlite(tmp_path),
            var_dir=tmp_path,
            events_max_age_s=7 * 86400,
            events_max_bytes=256 * 2**20,
        )
        runtime = await asyncio.to_thread(Runtime.open, settings)
        await runtime.start_messaging(nats_server.url)
        await runtime.stop_messaging()
        await asyncio.to_thread(runtime.close)
        info = await js.stream_info(EVENTS_STREAM)
        assert (info.config.max_age, info.config.max_bytes) == (7 * 86400, 256 * 2**20)
        assert info.config.duplicate_window == DUPLICATE_WINDOW_S

        await ensure_streams(js)  # a worker starting later must not reset it
        info = await js.stream_info(EVENTS_STREAM)
        assert (info.config.max_age, info.config.max_bytes) == (7 * 86400, 256 * 2**20)
    finally:
        await nc.close()


def test_a_malformed_retention_setting_stops_the_command_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "history", "00000000-0000-4000-8000-000000000000"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "TASKEXEC_DATABASE_URL": sqlite(tmp_path),
            "TASKEXEC_EVENTS_MAX_AGE": "a fortnight",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TASKEXEC_EVENTS_MAX_AGE='a fortnight'" in result.stderr
