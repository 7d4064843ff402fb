"""``python -m bench [NAME [args…]]``: run one benchmark, or all of them."""

from __future__ import annotations

import sys

from bench import read_side, replay

BENCHMARKS = {"read_side": read_side.main, "replay": replay.main}


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in BENCHMARKS:
        BENCHMARKS[args[0]](args[1:])
        return
    if args:
        sys.exit(f"unknown benchmark {args[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for run in BENCHMARKS.values():
        run([])


if __name__ == "__main__":
    main()
