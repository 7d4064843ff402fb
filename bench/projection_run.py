"""One catch-up and one rebuild of the read models of an existing store, by whatever code
``PYTHONPATH`` points at; prints one line of JSON (events/s and CPU µs per event).

Run as a script (``python bench/projection_run.py URL``) so that a checkout of older code
can be measured on the same store as the current one (``bench read_side --baseline``):
it imports only what every version has (``projections``, ``read_models`` from
``api.bootstrap`` or, in older code, ``api.runtime``, ``bench.common.open_service``).
The read models are dropped first, so the catch-up starts from position 0, as a new
deployment's or a wiped read side's would.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

try:
    from api.bootstrap import read_models
except ImportError:  # code from before the composition root
    from api.runtime import read_models  # type: ignore[attr-defined,no-redef]
from bench.common import open_service
from commands.persistence import DatabaseConfig
from projections.db import Database
from projections.rebuild import Rebuilder
from projections.runner import ProjectionRunner


def drop_read_models(db: Database) -> None:
    """Every read-model table of every generation, and the generation and positions."""
    with db.transaction() as cur:
        if db.postgres:
            rows = cur.execute(
                "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() "
                "AND (tablename ~ '_g[0-9]+$' "
                "OR tablename IN ('projection_position', 'read_model_generation'))"
            ).fetchall()
        else:  # the read models have a file of their own
            rows = cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for row in rows:
            cur.execute(f'DROP TABLE IF EXISTS "{row["name"]}"')


def measure(url: str, batch_size: int = 5000) -> dict[str, Any]:
    service = open_service(url)
    db = Database(DatabaseConfig.from_url(url))
    try:
        drop_read_models(db)
        runner = ProjectionRunner(service.read_log, read_models(), db, batch_size=batch_size)
        runner.prepare()
        wall, cpu = time.perf_counter(), time.process_time()
        applied = 0
        while count := runner.run_once():
            applied += count
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runner.stop()
        rebuilder = Rebuilder(
            service.read_log,
            lambda: service.recorder.max_notification_id() or 0,
            read_models(),
            db,
            batch_size=batch_size,
        )
        # Timed here, old tables' drop included, the same for any version of the code.
        rebuild_wall, rebuild_cpu = time.perf_counter(), time.process_time()
        result = rebuilder.rebuild(drop_after=0)
        rebuild_wall = time.perf_counter() - rebuild_wall
        rebuild_cpu = time.process_time() - rebuild_cpu
    finally:
        db.close()
        service.close()
    return {
        "events": applied,
        "catch_up": applied / wall,
        "catch_up_cpu_us": cpu / max(applied, 1) * 1e6,
        "rebuild": result.events / rebuild_wall,
        # Until the switch (code before 3291876 timed the drop too: then the same).
        "rebuild_to_switch": result.events / result.seconds,
        "rebuild_cpu_us": rebuild_cpu / max(result.events, 1) * 1e6,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])), flush=True)
