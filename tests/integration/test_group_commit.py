"""Group commit through the runtime on real event stores (SQLite and PostgreSQL): callers
that arrive while a batch is being saved share the next transaction. The service's own
batch cases (answers, clashes, races): tests/contract/test_batches.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from api.runtime import Runtime
from api.settings import Settings
from commands.messages import Outcome
from tests.contract.support import order


def test_concurrent_submits_through_the_runtime_share_a_transaction(
    database_url: str, tmp_path: Path
) -> None:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off"))
    try:
        service = runtime.service
        release, inside = threading.Event(), threading.Event()
        real_execute = service.execute
        calls: list[int] = []

        def held_execute(cmds: Any, atomic: bool = False) -> Any:
            calls.append(len(cmds))
            if len(calls) == 1:  # hold the first batch until the others are queued
                inside.set()
                assert release.wait(10)
            return real_execute(cmds, atomic)

        runtime.commits._execute = held_execute  # what the committer calls per batch
        outcomes: list[Outcome] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append(runtime.submit(order())))
            for _ in range(10)
        ]
        threads[0].start()
        assert inside.wait(10)
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 10
        while runtime.commits._queue.qsize() < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for thread in threads:
            thread.join(10)
        assert calls == [1, 9]
        assert len(outcomes) == 10
        # Read-your-writes held for every one of them.
        assert all(runtime.get_task(o.task_id) is not None for o in outcomes)
    finally:
        runtime.close()
