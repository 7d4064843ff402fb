"""The worker's app (``celery -A bench.peers.celery_worker worker``), configured by the
environment that ``CeleryPeer`` starts it with."""

from __future__ import annotations

import os

from bench.peers.celery_app import make_app

app = make_app(
    os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/9"),
    prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "64")),
    acks_late=os.environ.get("BENCH_CELERY_ACKS_LATE", "0") == "1",
)
