"""``taskexec dev``, ``serve`` and ``worker``: the long-running processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from api.cli import worker_limits
from api.settings import Settings
from api.settings_worker import parse_executors
from commands.gc_pause import settle_heap
from domain.executor_pool import DEFAULT_POOL, unique
from workers import tracing
from workers.nats_server import _die_with_parent


def add_commands(commands: Any) -> None:
    """Register ``dev``, ``serve`` and ``worker`` on the ``taskexec`` parser."""
    for name, func, text in (
        ("dev", cmd_dev, "all-in-one development stack"),
        ("serve", cmd_serve, "API, projections, relay, results consumer"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.set_defaults(func=func)

    worker = commands.add_parser("worker", help="run tasks pulled from NATS")
    worker.add_argument("--concurrency", type=int, default=4)
    worker.add_argument("--id", dest="worker_id", default=None, help="worker name in task metadata")
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running attempts get to finish on SIGTERM before they are handed back",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /health/live and /health/ready on this port "
        "(default: TASKEXEC_WORKER_METRICS_PORT; unset: none)",
    )
    worker.add_argument("--metrics-host", default="127.0.0.1", help="address of that port")
    worker.add_argument(
        "--executors",
        type=_executors,
        default=None,
        metavar="NAME[,NAME...]",
        help="the executor pools whose tasks it takes (default: TASKEXEC_WORKER_EXECUTORS; "
        f"unset: {DEFAULT_POOL})",
    )
    worker_limits.add_arguments(worker)
    worker.set_defaults(func=cmd_worker)


def _executors(text: str) -> tuple[str, ...]:
    try:
        return parse_executors("--executors", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextlib.contextmanager
def nats_for(settings: Settings) -> Iterator[str]:
    """TASKEXEC_NATS_URL if set, else an embedded nats-server under var/ for this process."""
    if settings.nats_url:
        yield settings.nats_url
        return
    from workers.nats_server import EmbeddedNatsServer

    server = EmbeddedNatsServer(settings.nats_store_dir)
    url = server.start()
    settings.nats_url_file.write_text(url)
    try:
        yield url
    finally:
        settings.nats_url_file.unlink(missing_ok=True)
        server.stop()


def serve(
    settings: Settings,
    host: str,
    port: int,
    nats_url: str,
    on_exit: Callable[[], None] = lambda: None,
) -> None:
    """The API until SIGINT or SIGTERM (``on_exit`` is called at the first one)."""
    import uvicorn

    from api.http.app import create_app
    from api.runtime import Runtime

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would kill
        # this process before our own clean-up (worker, nats-server) runs. Exit normally.
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()
            on_exit()

    app = create_app(Runtime.open(settings), nats_url, on_started=settle_heap)
    # log_config None: uvicorn's loggers go through ours (workers/logs.py); the access log
    # is our own (api/http/access_log.py).
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, log_config=None
    )
    Server(config).run()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    tracing.configure(settings.tracing, "serve")  # OTEL_* (api/settings_otel.py)
    with nats_for(settings) as nats_url:
        serve(settings, args.host, args.port, nats_url)
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from api.cli.apikey import ensure_dev_key

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    api_key = ensure_dev_key(settings)
    tracing.configure(settings.tracing, "serve")  # the worker it spawns: its own
    pools = dev_worker_pools(settings)
    with nats_for(settings) as nats_url:
        worker = spawn_worker(nats_url, pools)
        base = f"http://{args.host}:{args.port}"
        print(
            "taskexec dev\n"
            f"  API          {base}/api/v1/tasks\n"
            f"  API docs     {base}/schema  (OpenAPI: {base}/schema/openapi.json)\n"
            f"  health       {base}/health  (live: /health/live, ready: /health/ready)\n"
            f"  metrics      {base}/metrics  (Prometheus; permission metrics:read)\n"
            f"  API key      {api_key}\n"
            f"               every permission; kept in {settings.dev_api_key_file} (mode 0600)\n"
            f"               curl -H 'X-API-Key: {api_key}' {base}/api/v1/tasks\n"
            f"  database     {settings.database_url}\n"
            f"  NATS         {nats_url}  (store {settings.nats_store_dir.resolve()})\n"
            f"  worker       pid {worker.pid}, executor pools "
            f"{', '.join(settings.worker_executors or pools or ())}\n",
            flush=True,
        )
        try:  # the worker stops beside serve; the nats-server after both (nats_for)
            serve(settings, args.host, args.port, nats_url, on_exit=worker.terminate)
        finally:
            stop_worker(worker)
    return 0


def stop_worker(worker: subprocess.Popen[bytes], timeout: float = 35.0) -> None:
    """SIGTERM: running attempts get the worker's grace; killed after ``timeout``, or
    at once on another Ctrl-C."""
    worker.terminate()
    try:
        worker.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
    except KeyboardInterrupt:
        worker.kill()
        raise


def dev_worker_pools(settings: Settings) -> tuple[str, ...] | None:
    """The executor pools of ``dev``'s worker: every pool its definitions name whose tasks
    a worker runs (not MANUAL ones), the default pool first; None when
    TASKEXEC_WORKER_EXECUTORS says which (the worker reads it). Definitions are read at
    start: a pool added to them is taken up when ``dev`` starts again."""
    if settings.worker_executors is not None:
        return None
    from commands.catalog import DefinitionCatalog
    from domain.values import TaskType

    definitions = DefinitionCatalog.load(settings.definitions_dir).all()
    named = (d.executor for d in definitions if d.type is not TaskType.MANUAL)
    return unique([DEFAULT_POOL, *named])


def spawn_worker(nats_url: str, pools: tuple[str, ...] | None = None) -> subprocess.Popen[bytes]:
    """The worker of ``dev``: it ignores SIGINT (so do its children), a terminal's Ctrl-C
    reaches ``dev`` only, which stops it with SIGTERM; it dies with ``dev``. ``pools``:
    its ``--executors`` (None: TASKEXEC_WORKER_EXECUTORS or the default)."""
    env = {**os.environ, "TASKEXEC_NATS_URL": nats_url}
    executors = ["--executors", ",".join(pools)] if pools else []
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker", "--concurrency", "4", *executors],
        env=env,
        preexec_fn=_worker_child,
    )


def _worker_child() -> None:  # runs in the child between fork and exec
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    nats_url = settings.nats_url or _local_nats_url(settings.nats_url_file)
    if not nats_url:
        print(
            "taskexec worker: set TASKEXEC_NATS_URL (no local embedded server found)",
            file=sys.stderr,
        )
        return 2
    from api.bootstrap import run_worker

    try:
        sandbox = worker_limits.sandbox(settings, args)
    except ValueError as exc:
        print(f"taskexec worker: {exc}", file=sys.stderr)
        return 2
    port = args.metrics_port if args.metrics_port is not None else settings.worker_metrics_port
    metrics_at = (args.metrics_host, port) if port is not None else None
    tracing.configure(settings.tracing, "worker")
    worker = run_worker(
        settings,
        nats_url,
        args.concurrency,
        args.worker_id,
        args.grace,
        settle_heap,
        metrics_at,
        worker_pools(args.executors, settings),
        capacity=worker_limits.capacity(settings, args),
        sandbox=sandbox,
    )
    run_event_loop(worker)
    return 0


def worker_pools(flag: tuple[str, ...] | None, settings: Settings) -> tuple[str, ...]:
    """A worker's executor pools: ``--executors`` wins over TASKEXEC_WORKER_EXECUTORS;
    with neither, the default pool."""
    return flag or settings.worker_executors or (DEFAULT_POOL,)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop where it is installed (as uvicorn does for ``serve``)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _local_nats_url(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
