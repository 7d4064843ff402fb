"""What the processes behind a benchmark run cost: CPU per completed task and peak resident
memory, from /proc (Linux; no psutil).

A system is named groups of processes (``{"api": [pid], "worker": [pid], ...}``): each
group is its root processes *and every descendant* (Celery's pool children, a handler's
isolation child, Redis's background-save fork), summed. A process's CPU is its user +
system time plus that of its children already reaped (``cutime`` + ``cstime``), so a child
that exits mid-run is not lost. Beside the groups, every run also measures:

* ``database``: every process whose name is ``postgres`` (the server is shared by us,
  Procrastinate and anyone else on the machine: its CPU delta during the run, whoever
  caused it); the postmaster's ``cutime`` covers backends that ended during the run;
* ``client``: this process (the load generator for ours; for the peers, also their client
  library's submit and result handling), from ``getrusage``: shown, kept out of totals.

``total`` is the sum of the groups; ``total incl. database`` adds ``database``.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

TOTAL = "total"
DATABASE = "database"
TOTAL_WITH_DATABASE = "total incl. database"
CLIENT = "client"
#: Figures that are not one of a system's own groups.
DERIVED = (TOTAL, DATABASE, TOTAL_WITH_DATABASE, CLIENT)
DATABASE_PROCESS = "postgres"

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Proc:
    """One line of /proc/<pid>/stat, the fields used here."""

    ppid: int
    comm: str
    cpu: float  # seconds: utime + stime + cutime + cstime
    rss: int  # bytes


def read_proc(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    head, _, rest = text.rpartition(")")
    fields = rest.split()  # fields[0] is field 3 of proc(5) (state)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return Proc(int(fields[1]), head.split("(", 1)[1], ticks / _TICK, int(fields[21]) * _PAGE)


def scan() -> dict[int, Proc]:
    """Every process visible now."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (proc := read_proc(int(name))) is not None:
            procs[int(name)] = proc
    return procs


def tree(procs: Mapping[int, Proc], roots: Iterable[int]) -> set[int]:
    """``roots`` (those still alive) and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found: set[int] = set()
    pending = [pid for pid in roots if pid in procs]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def pids_named(comm: str, procs: Mapping[int, Proc] | None = None) -> list[int]:
    """Processes whose name (``comm``) is exactly ``comm``, as ``pgrep -x`` finds them."""
    return sorted(pid for pid, proc in (procs or scan()).items() if proc.comm == comm)


def child_named(parent: int, comm: str, argument: str = "") -> int | None:
    """The child of ``parent`` called ``comm`` whose command line holds ``argument``."""
    for pid, proc in scan().items():
        if proc.ppid != parent or proc.comm != comm:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if argument in cmdline:
            return pid
    return None


class Meter:
    """Peak RSS of each group (sampled in a thread while entered) and CPU per task of each
    group, of the database and of the client over the runs passed to ``measured``.

    ``cpu_per_task_ms`` maps ``"<figure> (<label>)"`` to one value (ms) per run;
    ``peak_rss_mb`` maps each group and ``total`` to MB; ``processes`` the most processes
    each group had at once.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], interval: float = 0.25) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.interval = interval
        self.cpu_per_task_ms: dict[str, list[float]] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.processes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Meter:
        self.sample()
        self._thread = threading.Thread(target=self._sampling, name="bench-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def _sampling(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        procs = scan()
        total = 0.0
        for name, roots in self.groups.items():
            pids = tree(procs, roots)
            mb = sum(procs[pid].rss for pid in pids) / 2**20
            total += mb
            self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), mb)
            self.processes[name] = max(self.processes.get(name, 0), len(pids))
        if self.groups:
            self.peak_rss_mb[TOTAL] = max(self.peak_rss_mb.get(TOTAL, 0.0), total)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far: each group, the database and the client."""
        procs = scan()
        seconds = {
            name: sum(procs[pid].cpu for pid in tree(procs, roots))
            for name, roots in self.groups.items()
        }
        seconds[DATABASE] = sum(p.cpu for p in procs.values() if p.comm == DATABASE_PROCESS)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seconds[CLIENT] = usage.ru_utime + usage.ru_stime
        return seconds

    def measured(self, label: str, tasks: int, run: Callable[[], T]) -> T:
        """``run()`` (which completes ``tasks`` tasks); unless it returns None, keep the CPU
        per task of every figure under ``label``."""
        before = self.cpu()
        value = run()
        after = self.cpu()
        if value is not None:
            per_task = {name: (after[name] - before[name]) / tasks * 1000 for name in before}
            per_task[TOTAL] = sum(per_task[name] for name in self.groups)
            per_task[TOTAL_WITH_DATABASE] = per_task[TOTAL] + per_task[DATABASE]
            for name, ms in per_task.items():
                self.cpu_per_task_ms.setdefault(f"{name} ({label})", []).append(ms)
        return value
