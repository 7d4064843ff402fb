#!/usr/bin/env python3
"""Check the hash chains of a ``taskexec audit export`` file with nothing but Python's
standard library: an auditor's check that does not trust the service's own code.

    taskexec audit export --output events.jsonl
    python verify_export.py events.jsonl            # exit 0: every chain intact
    python verify_export.py --partial part.jsonl    # an export made with --since/--until

Each exported event carries ``topic``, ``timestamp`` and ``fields`` (exactly what its hash
covers), ``prevHash`` and ``hash``. For every aggregate the events must have versions
1, 2, 3, … (with ``--partial``: consecutive from wherever the file starts), each
``prevHash`` must equal the previous event's ``hash`` (64 zeros before the first), and
each ``hash`` must be the SHA-256 of the canonical encoding of

    ["taskexec-chain-v1", aggregate id, version, topic, timestamp, prevHash, fields]

(JSON, keys sorted, no whitespace, UTF-8, as below). Problems are printed; exit 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

GENESIS = "0" * 64


def canonical(document: Any) -> bytes:
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8", "surrogatepass")


def event_hash(event: dict[str, Any]) -> str:
    document = [
        "taskexec-chain-v1",
        event["aggregateId"],
        event["version"],
        event["topic"],
        event["timestamp"],
        event["prevHash"],
        event["fields"],
    ]
    return hashlib.sha256(canonical(document)).hexdigest()


def check(lines: Any, partial: bool = False) -> tuple[int, list[str]]:
    """(events checked, problems) for an export's lines."""
    last: dict[str, tuple[int, str]] = {}  # aggregate id -> (version, hash)
    problems: list[str] = []
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        event = json.loads(line)
        count += 1
        where = f"line {number}: {event.get('aggregateType')} {event.get('aggregateId')} "
        where += f"version {event.get('version')}"
        aggregate, version = event["aggregateId"], event["version"]
        previous = last.get(aggregate)
        if previous is None:
            expected_version, expected_prev = (
                (version, event["prevHash"]) if partial else (1, GENESIS)
            )
        else:
            expected_version, expected_prev = previous[0] + 1, previous[1]
        if version != expected_version:
            problems.append(f"{where}: expected version {expected_version} (missing events?)")
        elif event["prevHash"] != expected_prev:
            problems.append(f"{where}: prevHash does not match the previous event's hash")
        if not event.get("hash") or event_hash(event) != event["hash"]:
            problems.append(f"{where}: hash does not match the event's content (altered?)")
        last[aggregate] = (version, event.get("hash") or "")
    return count, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a file written by `taskexec audit export`")
    parser.add_argument(
        "--partial", action="store_true", help="chains may start after version 1 (--since)"
    )
    args = parser.parse_args(argv)
    with open(args.export, encoding="utf-8") as lines:
        count, problems = check(lines, args.partial)
    for problem in problems:
        print(problem)
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in {count} event(s)")
        return 1
    print(f"OK: {count} event(s), every hash chain intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
