"""Executor pools: names checked where a definition is loaded and where a worker is told
its pools; the subjects, consumers and announcements of each pool; the work items of a
pooled definition's tasks on their pool's subjects (submitted, scheduled, retried,
published again)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import build_parser
from api.cli.processes import dev_worker_pools, worker_pools
from api.settings import Settings
from domain.definition import TaskDefinition
from domain.errors import InvalidValue
from domain.executor_pool import DEFAULT_POOL, check_pool, parse_pools, pool_of
from domain.task import Task
from domain.values import RetryOverrides
from tests.unit.test_outbox_mapping import HANDLER, INPUT, T0, TASK_ID, USER, WORKER
from workers.bridge.outbox import to_messages, work_again, work_for
from workers.protocol import (
    announced_queue,
    consumer_queue,
    queued_subject,
    work_consumer,
    work_decoder,
    work_subject,
)


def doc(executor: Any = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"handler": HANDLER, **extra}
    if executor is not None:
        config["executor"] = executor
    return {
        "id": "pooled",
        "name": "P",
        "type": "AUTOMATED",
        "version": "1",
        **{"executionConfig": config},
    }


@pytest.mark.parametrize("name", ["gpu", "standard-executor", "a", "x1-y2", "9" * 63])
def test_pool_names_that_are_safe_tokens_are_taken(name: str) -> None:
    assert check_pool(name) == name
    assert TaskDefinition.from_document(doc(name)).executor == name


@pytest.mark.parametrize(
    "name", ["", "GPU", "gpu.large", "gpu*", "gpu>", "-gpu", "gpu-", "a b", "g_u", "9" * 64, 7]
)
def test_a_bad_pool_name_is_refused_at_load_naming_the_field(name: Any) -> None:
    with pytest.raises(InvalidValue) as refused:
        TaskDefinition.from_document(doc(name))
    assert str(refused.value).startswith("pooled: executionConfig.executor ")


def test_a_definition_without_executor_is_in_the_default_pool() -> None:
    assert TaskDefinition.from_document(doc()).executor == DEFAULT_POOL == "standard-executor"
    assert pool_of({}) == DEFAULT_POOL


def test_pool_lists_are_checked_deduplicated_and_never_empty() -> None:
    assert parse_pools(" gpu, standard-executor ,gpu", "--executors") == (
        "gpu",
        "standard-executor",
    )
    with pytest.raises(InvalidValue, match="--executors names no pool"):
        parse_pools(" , ", "--executors")
    with pytest.raises(InvalidValue, match="--executors 'Gpu' is not a pool name"):
        parse_pools("gpu,Gpu", "--executors")


def test_the_default_pool_keeps_the_subjects_from_before_pools() -> None:
    for pool in (None, DEFAULT_POOL):
        assert work_subject("HIGH", pool) == "tasks.work.high"
        assert queued_subject("high", pool) == "tasks.queued.high"
        assert work_consumer("high", pool) == "work-high"
    assert work_subject("HIGH", "gpu") == "tasks.work.gpu.high"
    assert queued_subject("low", "gpu") == "tasks.queued.gpu.low"
    assert work_consumer("low", "gpu") == "work-gpu-low"


@pytest.mark.parametrize("pool", [DEFAULT_POOL, "gpu", "critical", "low-high", "work"])
@pytest.mark.parametrize("priority", ["critical", "high", "medium", "low"])
def test_subjects_and_consumer_names_give_back_their_pool_and_priority(
    pool: str, priority: str
) -> None:
    assert announced_queue(queued_subject(priority, pool)) == (pool, priority)
    assert consumer_queue(work_consumer(priority, pool)) == (pool, priority)
    assert work_subject(priority, pool).endswith(f".{priority}")


@pytest.mark.parametrize(
    "subject", ["tasks.queued.urgent", "tasks.queued.gpu.urgent", "tasks.queued.a.b.low", "x.low"]
)
def test_other_subjects_are_no_announcement(subject: str) -> None:
    assert announced_queue(subject) is None


@pytest.mark.parametrize("name", ["results", "work-urgent", "worker-low", "other"])
def test_other_consumers_are_no_work_queue(name: str) -> None:
    assert consumer_queue(name) is None


def pooled_task(executor: str | None = "gpu", **kwargs: Any) -> Task:
    return Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=TaskDefinition.from_document(doc(executor)),
        input=INPUT,
        **kwargs,
    )


def test_a_pooled_tasks_work_goes_to_its_pools_subject() -> None:
    submitted = pooled_task().collect_events()[0]
    assert isinstance(submitted, Task.Submitted)
    assert submitted.execution["executor"] == "gpu"  # recorded: a later definition won't move it
    work = to_messages(submitted, 1)[1]
    assert (work.subject, work.pool) == ("tasks.work.gpu.medium", "gpu")
    assert work_decoder.decode(work.body).executor == "gpu"


def test_the_default_pool_named_or_not_keeps_the_old_subject() -> None:
    for executor in (None, DEFAULT_POOL):
        work = to_messages(pooled_task(executor).collect_events()[0], 1)[1]
        assert (work.subject, work.pool) == ("tasks.work.medium", None)


def test_a_scheduled_pooled_task_fires_into_its_pools_subject() -> None:
    task = pooled_task(scheduled_at=T0 + timedelta(hours=1))
    work = to_messages(task.collect_events()[0], 1)[1]
    assert work.subject == f"tasks.scheduled.{TASK_ID}"
    assert work.headers is not None
    assert work.headers["Nats-Schedule-Target"] == "tasks.work.gpu.medium"
    assert work.pool == "gpu"


def test_a_retry_and_work_published_again_stay_in_the_pool() -> None:
    task = pooled_task(retry_policy=RetryOverrides(max_retries=2, retry_interval_ms=500))
    task.collect_events()
    task.start(attempt=1, worker="w", at=T0, actor=WORKER)
    task.fail(attempt=1, error_type="IOError", error_message="x", at=T0, actor=WORKER)
    retry = task.collect_events()[-1]
    assert to_messages(retry, 9, lambda _id, _version: task)[1].subject == "tasks.work.gpu.medium"
    again = work_again(work_for(task, 2), "again-1")
    assert (again.subject, again.pool) == ("tasks.work.gpu.medium", "gpu")


def test_old_work_items_without_a_pool_are_the_default_pools() -> None:
    old = b'{"taskId":"t","attempt":1,"taskType":"AUTOMATED","definitionId":"d","input":{},'
    item = work_decoder.decode(old + b'"timeoutMs":1,"priority":"LOW"}')
    assert item.executor is None
    assert work_again(item, "again-1").subject == "tasks.work.low"


def test_the_flag_wins_over_the_variable_and_the_default_is_the_standard_pool() -> None:
    from_env = Settings.from_env({"TASKEXEC_WORKER_EXECUTORS": "gpu,cpu"})
    assert worker_pools(("io",), from_env) == ("io",)
    assert worker_pools(None, from_env) == ("gpu", "cpu")
    assert worker_pools(None, Settings()) == (DEFAULT_POOL,)
    args = build_parser().parse_args(["worker", "--executors", "io, gpu"])
    assert args.executors == ("io", "gpu")


def test_a_bad_pool_in_the_flag_or_variable_is_an_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--executors", "GPU"])
    assert "--executors 'GPU' is not a pool name" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"TASKEXEC_WORKER_EXECUTORS 'a\.b' is not a pool name"):
        Settings.from_env({"TASKEXEC_WORKER_EXECUTORS": "a.b"})
    with pytest.raises(ValueError, match="TASKEXEC_WORKER_EXECUTORS"):
        Settings(worker_executors=("ok", "Not OK"))


def test_devs_worker_takes_every_pool_its_definitions_name(tmp_path: Path) -> None:
    import json

    (tmp_path / "gpu.json").write_text(json.dumps({**doc("gpu"), "id": "on-gpu"}))
    (tmp_path / "people.json").write_text(
        json.dumps(
            {
                "id": "by-hand",
                "name": "M",
                "type": "MANUAL",
                "version": "1",
                "executionConfig": {"executor": "people"},
            }
        )
    )
    pools = dev_worker_pools(Settings(definitions_dir=tmp_path))
    # The default first; the built-in process-payment's pool; never a MANUAL one's.
    assert pools is not None and pools[0] == DEFAULT_POOL
    assert sorted(pools[1:]) == ["gpu", "integration-executor"]
    told = Settings(definitions_dir=tmp_path, worker_executors=("gpu",))
    assert dev_worker_pools(told) is None  # the worker reads TASKEXEC_WORKER_EXECUTORS
