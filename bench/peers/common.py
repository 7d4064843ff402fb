"""What both peers share: the interface, the open-loop driver, worker subprocesses (their
command line: bench/peers/cli.py).

Nothing here knows about Celery or Procrastinate, and nothing imports the service's code.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, Protocol, Self, TypeVar

T = TypeVar("T")

#: The repository root: worker subprocesses run from here so that ``bench.peers`` imports.
REPO_ROOT = Path(__file__).resolve().parents[2]


class Peer(Protocol):
    """The four measurements each peer offers; a context manager owns its whole stack."""

    name: str

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def throughput(self, n: int) -> float:
        """Submit n tasks one call each, wait for all n results; tasks/s, first submit to
        last completion."""
        ...

    def throughput_bulk(self, n: int) -> float | None:
        """The same through the peer's batch submission; None if it has none."""
        ...

    def submit_latency(self, rate: float, seconds: float) -> list[float]:
        """Open loop at ``rate`` submits/s for ``seconds``: how long each submit call took."""
        ...

    def idle_latency(self, samples: int) -> list[float]:
        """One task at a time on an idle system: submit to the client knowing it is done."""
        ...


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as ``bench.common``, re-stated to stay apart)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def open_loop(rate: float, seconds: float, submit: Callable[[], T]) -> tuple[list[float], list[T]]:
    """Call ``submit`` at t0 + i/rate for i < rate*seconds; each call's duration, and results.

    Open loop: the schedule does not wait for tasks, only for the previous submit call
    (there is one client thread). A call that starts late because the one before it was
    slow still reports only its own duration, as asked; how far the schedule slipped is
    visible in the caller's wall time, and is printed by the CLI.
    """
    count = max(1, round(rate * seconds))
    latencies: list[float] = []
    handles: list[T] = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        begin = time.perf_counter()
        handles.append(submit())
        latencies.append(time.perf_counter() - begin)
    return latencies, handles


def wait_until(condition: Callable[[], bool], timeout: float, interval: float, what: str) -> None:
    """Poll ``condition`` every ``interval`` seconds; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Workers:
    """Worker subprocesses in process groups of their own, so that teardown reaches every
    child (Celery's prefork pool, for one) and a Ctrl-C in the terminal reaches only the
    client, which then stops the workers in order instead of leaving them half-killed.
    """

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str]) -> None:
        self._commands = commands
        self._env = env
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Self:
        try:
            for command in self._commands:
                log = tempfile.TemporaryFile(prefix="bench-peer-worker-")
                # O_APPEND: the worker writes at the end whatever offset ``tail`` reads at
                flags = fcntl.fcntl(log.fileno(), fcntl.F_GETFL)
                fcntl.fcntl(log.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
                self._logs.append(log)
                self._procs.append(
                    subprocess.Popen(
                        list(command),
                        cwd=REPO_ROOT,
                        env=self._env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_die_with_parent,
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """The worker processes (each the root of its own children, if any)."""
        return [proc.pid for proc in self._procs]

    def check_alive(self) -> None:
        """Raise with the worker's own output if one of them has died."""
        for proc, log in zip(self._procs, self._logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.args!r} exited with {proc.returncode}:\n{self._tail(log)}"
                )

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each group (a warm shutdown for both peers), then SIGKILL what is left."""
        for proc in self._procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self._procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self._procs:
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers: pool children, if any
            proc.wait()
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def tail(self, size: int = 4000) -> str:
        """The last output of every worker, for error messages."""
        return "\n".join(self._tail(log, size) for log in self._logs)

    @staticmethod
    def _tail(log: IO[bytes], size: int = 4000) -> str:
        end = log.seek(0, os.SEEK_END)
        log.seek(max(0, end - size))
        return log.read().decode(errors="replace")


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the client dies, so that even a
    client killed with SIGKILL (no teardown) does not leave a worker running forever."""
    PR_SET_PDEATHSIG = 1
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Hold off Ctrl-C while a peer tears down: a second Ctrl-C must not abandon workers,
    a database or Redis keys half-way (teardown is bounded by ``Workers.stop``'s grace)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a peer is up, so ``kill`` runs teardown too."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the teardown finish
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
