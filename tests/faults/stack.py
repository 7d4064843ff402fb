"""Real processes for fault tests: ``taskexec serve`` replicas and workers, a load that
submits at a steady rate, and the checks every fault test ends with.

Everything is on loopback, bounded in time, and killed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import httpx

from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.task import Task
from domain.values import TaskStatus
from tests.conftest import EXAMPLE_INPUT, free_port

ROOT = Path(__file__).parents[2]
ACK_WAIT_S = 3.0  # a dead worker's attempt is redelivered after this long
TERMINAL_EVENTS = {"Completed", "Failed", "TimedOut", "Cancelled"}

HANDLERS = textwrap.dedent(
    """
    import os
    import time

    def slow(payload, context):
        with open(os.environ["FAULT_RUNS"], "a") as runs:  # one line per run: re-runs show
            runs.write(f"{context.task_id} {context.attempt} {context.worker}\\n")
        time.sleep(payload["seconds"])  # long enough to report its start apart
        return {"slept": payload["seconds"]}

    def crash(payload, context):
        os.kill(os.getpid(), 9)  # takes its worker down before any report

    class Declined(Exception):
        pass

    def charge_card(amount):
        raise Declined(f"card declined for {amount}")

    def fail(payload, context):  # its traceback must be kept with the task
        charge_card(payload["amount"])
    """
)
FAIL = {
    "id": "fail",
    "name": "Fail",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 30_000,
    "executionConfig": {"handler": "fault_handlers:fail"},
}
CRASH = {
    "id": "crash",
    "name": "Crash",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 30_000,
    "executionConfig": {"handler": "fault_handlers:crash"},
}
SLOW = {
    "id": "slow",
    "name": "Slow",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 30_000,
    "executionConfig": {"handler": "fault_handlers:slow"},
}

# ``slow`` in another executor pool: only workers started with ``executors=POOL_B`` run it.
POOL_B = "pool-b"
SLOW_B = {
    **SLOW,
    "id": "slow-b",
    "executionConfig": {"handler": "fault_handlers:slow", "executor": POOL_B},
}


class Stack:
    """Processes sharing one database and one NATS; each writes to ``dir/<name>.log``."""

    def __init__(
        self,
        database_url: str,
        nats_url: str,
        tmp_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: more variables for every process (``TASKEXEC_NATS_REPLICAS``, …)."""
        self.dir = tmp_path
        code, definitions = tmp_path / "code", tmp_path / "definitions"
        code.mkdir()
        definitions.mkdir()
        (code / "fault_handlers.py").write_text(HANDLERS)
        (definitions / "slow.json").write_text(json.dumps(SLOW))
        (definitions / "crash.json").write_text(json.dumps(CRASH))
        (definitions / "fail.json").write_text(json.dumps(FAIL))
        (definitions / "slow-b.json").write_text(json.dumps(SLOW_B))
        self.database_url = database_url
        self.env = {
            **os.environ,
            "TASKEXEC_DATABASE_URL": database_url,
            "TASKEXEC_NATS_URL": nats_url,
            "TASKEXEC_DEFINITIONS_DIR": str(definitions),
            "TASKEXEC_VAR_DIR": str(tmp_path / "var"),
            "TASKEXEC_RATE_LIMIT": "off",
            "TASKEXEC_LOG_LEVEL": "INFO",
            "TASKEXEC_RATE_LIMIT_BULK": "off",
            "TASKEXEC_WORK_ACK_WAIT_SECONDS": str(ACK_WAIT_S),
            "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)]),
            "FAULT_RUNS": str(tmp_path / "runs.txt"),
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.key = self.cli("apikey", "create", "--name", "faults", "--permissions", "all").strip()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = (self.dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            env={**self.env, **(env or {})},
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def serve(self, name: str, env: dict[str, str] | None = None) -> str:
        """Start (or restart, on the same port) a serve replica; its base URL once healthy.
        ``env``: variables of this replica's own (a database URL through a proxy, say)."""
        port = self.ports.setdefault(name, free_port())
        self._spawn(name, "serve", "--port", str(port), env=env)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            assert self.processes[name].poll() is None, self.logs()
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def worker(
        self,
        name: str,
        concurrency: int = 8,
        executors: str | None = None,
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        """A worker; ``executors``: its ``--executors`` (None: none given); ``env``: its
        own variables (``TASKEXEC_WORKER_EXECUTORS``, say); ``options``: more of
        ``taskexec worker``'s (``--run-as``, …)."""
        pools = ["--executors", executors] if executors else []
        args = ("worker", "--id", name, "--concurrency", str(concurrency), *pools, *options)
        self._spawn(name, *args, env=env)

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up of any kind."""
        process = self.processes[name]
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def slow_runs(self) -> Counter[str]:
        """How many times the ``slow`` handler ran, per ``task attempt`` (any worker)."""
        runs = self.dir / "runs.txt"
        lines = runs.read_text().splitlines() if runs.exists() else []
        return Counter(line.rsplit(" ", 1)[0] for line in lines)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.dir.glob("*.log"))
        )


@dataclass
class Load:
    """Submits alternately a quick and a slow task at ``rate`` per second to the given
    replicas in turn; ``acknowledged`` holds the ids answered 201. ``failing_every`` n:
    every n-th task is one whose handler raises instead (its ids also in ``failing``)."""

    bases: list[str]
    key: str
    rate: float = 50.0
    failing_every: int = 0
    acknowledged: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        headers = {"X-API-Key": self.key}
        with httpx.Client(timeout=5.0, headers=headers) as client:
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                body: dict[str, object] = (
                    {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
                    if n % 2
                    else {"taskDefinitionId": "slow", "input": {"seconds": 0.2}}
                )
                fails = self.failing_every > 0 and n % self.failing_every == 0
                if fails:
                    body = {"taskDefinitionId": "fail", "input": {"amount": n}}
                base = self.bases[n % len(self.bases)]
                try:
                    response = client.post(f"{base}/api/v1/tasks", json=body)
                except httpx.HTTPError:
                    self.refused += 1
                else:
                    if response.status_code == 201:
                        self.acknowledged.append(response.json()["id"])
                        if fails:
                            self.failing.append(response.json()["id"])
                    else:
                        self.refused += 1
                n += 1
                next_at += 1.0 / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))


@dataclass
class Outcome:
    """What became of the acknowledged tasks, read from the event store."""

    acknowledged: int
    statuses: Counter[str]
    stuck: list[str]
    terminal_events: Counter[int]  # how many tasks had N terminal events
    ran_twice: int  # tasks with more than one Started event (a handler ran again)
    seconds: float

    def summary(self) -> str:
        return (
            f"acknowledged {self.acknowledged}, statuses {dict(self.statuses)}, "
            f"stuck {len(self.stuck)}, terminal events per task {dict(self.terminal_events)}, "
            f"ran twice {self.ran_twice}, settled in {self.seconds:.1f} s"
        )


def settle(database_url: str, ids: list[str], within_s: float) -> Outcome:
    """Wait (at most ``within_s``) until every task in ``ids`` is terminal; what came of them."""
    config = DatabaseConfig.from_url(database_url)
    service = TaskService(config.eventsourcing_env(pool_size=2), DefinitionCatalog([]))
    started = time.monotonic()
    try:
        waiting = {UUID(task_id) for task_id in ids}
        while waiting and time.monotonic() - started < within_s:
            waiting = {t for t in waiting if not service.load(t).status.is_terminal}
            if waiting:
                time.sleep(0.5)
        seconds = time.monotonic() - started
        statuses: Counter[str] = Counter()
        terminal: Counter[int] = Counter()
        ran_twice = 0
        for task_id in ids:
            events = [type(e).__name__ for e in service.events.get(UUID(task_id))]
            statuses[service.load(UUID(task_id)).status.value] += 1
            terminal[sum(name in TERMINAL_EVENTS for name in events)] += 1
            ran_twice += events.count("Started") > 1
        stuck = [str(t) for t in waiting]
        return Outcome(len(ids), statuses, stuck, terminal, ran_twice, seconds)
    finally:
        service.close()


def failed_tracebacks(database_url: str, ids: list[str]) -> dict[str, str | None]:
    """The traceback each task's ``Failed`` event kept (None: none, or no such event)."""
    config = DatabaseConfig.from_url(database_url)
    service = TaskService(config.eventsourcing_env(pool_size=2), DefinitionCatalog([]))
    try:
        kept: dict[str, str | None] = {}
        for task_id in ids:
            ends = [e for e in service.events.get(UUID(task_id)) if isinstance(e, Task.Failed)]
            kept[task_id] = ends[-1].traceback if ends else None
        return kept
    finally:
        service.close()


__all__ = [
    "ACK_WAIT_S",
    "POOL_B",
    "Load",
    "Outcome",
    "Stack",
    "TaskStatus",
    "failed_tracebacks",
    "settle",
]
