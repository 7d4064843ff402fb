"""The stall catcher's hooks (``python -m bench stalls``), loaded by every Python process
started with this folder on ``PYTHONPATH`` and ``BENCH_STALL_LOG`` set: each process
appends to ``<BENCH_STALL_LOG>.<pid>`` lines that start with ``time.monotonic()`` (one
clock for every process of the machine), so that a slow request lines up with what its
server was doing:

- ``gc``: a cyclic collection that held the GIL over 3 ms of this thread's CPU (its
  generation, wall and CPU milliseconds, objects collected);
- ``handle``: an event-loop callback that ran over 8 ms (the loop ran nothing else);
- ``gap``: a ticker thread that sleeps 1 ms woke over 15 ms late (the GIL was held
  elsewhere, or the process was not scheduled), with every thread's innermost frames;
- ``census`` after a long full pass, with ``BENCH_STALL_CENSUS`` set: the types the oldest
  generation holds (a slow diagnostic: it walks them all);
- ``summary`` at exit: per generation, collections, their CPU and the longest.
Diagnostics only: never loaded by the service itself.
"""

from __future__ import annotations

import asyncio.events
import atexit
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

_PATH = os.environ.get("BENCH_STALL_LOG")


def _install(path: str) -> None:
    out = open(f"{path}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115 (the process's)
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            out.write(f"{time.monotonic():.4f} {line}\n")

    log("start " + " ".join(sys.argv))
    started = {"wall": 0.0, "cpu": 0.0}
    totals = {generation: [0, 0.0, 0.0] for generation in range(3)}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.update(wall=time.perf_counter(), cpu=time.thread_time())
            return
        wall = (time.perf_counter() - started["wall"]) * 1000
        cpu = (time.thread_time() - started["cpu"]) * 1000
        total = totals[info["generation"]]
        total[0] += 1
        total[1] += cpu
        total[2] = max(total[2], cpu)
        if cpu > 3:
            generation, collected = info["generation"], info["collected"]
            log(f"gc gen={generation} ms={wall:.1f} cpu={cpu:.1f} collected={collected}")
            if generation == 2 and os.environ.get("BENCH_STALL_CENSUS"):
                log(f"census {_census()}")

    gc.callbacks.append(on_gc)

    def summary() -> None:
        parts = [
            f"gen{g}: n={t[0]:.0f} cpu={t[1]:.0f}ms max={t[2]:.1f}ms" for g, t in totals.items()
        ]
        log("summary " + " ".join(parts))

    atexit.register(summary)
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        began = time.perf_counter()
        try:
            run(handle)
        finally:
            ms = (time.perf_counter() - began) * 1000
            if ms > 8:
                log(f"handle ms={ms:.1f} {handle!r}"[:400])

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    def ticker() -> None:
        last = time.perf_counter()
        while True:
            time.sleep(0.001)
            now = time.perf_counter()
            if (now - last) * 1000 > 15:
                log(f"gap ms={(now - last) * 1000:.1f}\n{_stacks()}")
            last = now

    threading.Thread(target=ticker, name="stall-ticker", daemon=True).start()


def _census() -> str:
    """What the oldest generation holds after a full pass: the ten commonest types (what
    the next full pass will scan again), and how many objects in all."""
    counts: dict[str, int] = {}
    objects = gc.get_objects(2)
    for obj in objects:
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:10]
    return f"{len(objects)} objects: " + ", ".join(f"{name} {n}" for name, n in top)


# Innermost frames of a thread that waits (for a lock, a queue, a socket, work): left out.
_IDLE = {("threading.py", "wait"), ("selectors.py", "select"), ("thread.py", "_worker")}


def _stacks() -> str:
    """The innermost frames of every thread that was not idly waiting."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = []
    for ident, frame in sys._current_frames().items():
        frames = traceback.extract_stack(frame)[-4:]
        inner = (os.path.basename(frames[-1].filename), frames[-1].name)
        if names.get(ident) == "stall-ticker" or inner in _IDLE:
            continue
        where = " < ".join(
            f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in reversed(frames)
        )
        lines.append(f"    [{names.get(ident, ident)}] {where}")
    return "\n".join(lines)


if _PATH:
    _install(_PATH)
