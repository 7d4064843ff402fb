"""The worker's app (``procrastinate --app bench.peers.procrastinate_worker.app worker``),
configured by the environment that ``ProcrastinatePeer`` starts it with."""

from __future__ import annotations

import os

from bench.peers.procrastinate_app import make_app

app = make_app(
    os.environ.get("BENCH_PROCRASTINATE_DSN", "postgresql://root@127.0.0.1:5432/test"),
    pool_size=int(os.environ.get("BENCH_PROCRASTINATE_POOL", "4")),
    sync_task=os.environ.get("BENCH_PROCRASTINATE_SYNC_TASK", "0") == "1",
)
