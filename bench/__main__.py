"""``python -m bench [NAME [args…]]``: one benchmark; with no name, the side-by-side
comparison (``compare``), its samples and its plot written under ``bench/results/``.
``python -m bench all`` runs every benchmark with its defaults (the read side seeds a
million tasks: that one alone takes a while)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench import (
    ab,
    compare,
    e2e,
    http_floor,
    idle_path,
    profile,
    read_side,
    replay,
    scheduled,
    stalls,
)

BENCHMARKS = {
    "ab": ab.main,
    "compare": compare.main,
    "e2e": e2e.main,
    "http_floor": http_floor.main,
    "idle_path": idle_path.main,
    "profile": profile.main,
    "read_side": read_side.main,
    "replay": replay.main,
    "scheduled": scheduled.main,
    "stalls": stalls.main,
}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    args = sys.argv[1:]
    if not args:
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        compare.main(
            [
                "--json",
                str(RESULTS / f"compare-{stamp}.json"),
                "--plot",
                str(RESULTS / f"compare-{stamp}.png"),
            ]
        )
        return
    if args[0] == "all":
        for name, run in BENCHMARKS.items():
            if name not in ("ab", "profile"):  # a comparison of two trees; py-spy shares
                run([])
        return
    if args[0] in BENCHMARKS:
        BENCHMARKS[args[0]](args[1:])
        return
    sys.exit(f"unknown benchmark {args[0]!r}; choose from all, {', '.join(BENCHMARKS)}")


if __name__ == "__main__":
    main()
