"""``python -m bench.schema_check``: jsonschema against the fast path, µs per document.

For the built-in ``calculate-order-total`` schemas and the spec's example input: the old
catalog path (``schema_violations`` over a ``Draft202012Validator``), jsonschema's
``is_valid``, the compiled check alone, and ``SchemaValidator.violations`` (the catalog's
path now), for a valid document and for an invalid one (which falls back to jsonschema).
Prints medians of several timing rounds.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

from bench.common import EXAMPLE_INPUT
from commands.catalog import BUILTIN_DIR, SchemaValidator, load_file, schema_violations
from commands.schema_check import compile_check

EXAMPLE_OUTPUT = {"subtotal": 46.97, "tax": 3.76, "total": 50.73}
INVALID_INPUT = {"orderId": "ORD-123", "items": [{"id": "ITEM-1", "quantity": -1}]}


def median_us(run: Callable[[], object], rounds: int = 7, budget_s: float = 0.2) -> float:
    """Median over ``rounds`` of the mean time of one call, in µs."""
    number = max(1, int(budget_s / max(timeit.timeit(run, number=10) / 10, 1e-9)))
    return (
        statistics.median(timeit.timeit(run, number=number) / number for _ in range(rounds)) * 1e6
    )


def report(label: str, schema: Any, document: Any) -> None:
    validator = Draft202012Validator(schema)
    check = compile_check(schema)
    assert check is not None, "the built-in schemas are in the fast path's subset"
    fast = SchemaValidator(schema)
    rows = [
        ("schema_violations(Draft202012Validator)", lambda: schema_violations(validator, document)),
        ("Draft202012Validator.is_valid", lambda: validator.is_valid(document)),
        ("compile_check(schema)(document)", lambda: check(document)),
        ("SchemaValidator.violations", lambda: fast.violations(document)),
    ]
    print(f"\n{label}")
    baseline = 0.0
    for name, run in rows:
        us = median_us(run)
        baseline = baseline or us
        print(f"  {name:42s} {us:9.2f} µs   x{baseline / us:6.1f}")


def main(args: list[str] | None = None) -> None:
    order = load_file(BUILTIN_DIR / "calculate-order-total.json")
    print(f"Python {sys.version.split()[0]}; medians of 7 rounds; x = speed-up over the first row")
    compile_us = median_us(lambda: compile_check(order.input_schema))
    print(f"compile_check(inputSchema): {compile_us:.1f} µs once per schema")
    report(
        "calculate-order-total input, the spec's example (valid)", order.input_schema, EXAMPLE_INPUT
    )
    report(
        "calculate-order-total output, the spec's example (valid)",
        order.output_schema,
        EXAMPLE_OUTPUT,
    )
    report("calculate-order-total input, invalid (falls back)", order.input_schema, INVALID_INPUT)


if __name__ == "__main__":
    main(sys.argv[1:])
