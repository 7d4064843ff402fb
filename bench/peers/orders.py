"""The workload every system in the side-by-side benchmark runs: ``calculate-order-total``.

A pure function, written here on purpose instead of importing the service's own handler:
the peers must not depend on our code, so that a change on our side cannot quietly change
what the peers are asked to do.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

TASK_NAME = "calculate-order-total"
TAX_RATE = Decimal("0.08")
CENT = Decimal("0.01")

EXAMPLE_INPUT: dict[str, Any] = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}
EXPECTED_OUTPUT: dict[str, float] = {"subtotal": 46.97, "tax": 3.76, "total": 50.73}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def calculate_order_total(order: dict[str, Any]) -> dict[str, float]:
    """Subtotal (sum of quantity * price), 8 % tax and total, each rounded half-up to cents.

    Prices go through ``str`` into ``Decimal`` so that 10.99 is 10.99 and not the binary
    float just below it; the results go back to ``float`` because that is what JSON (and
    so every system's result payload) carries.
    """
    subtotal = _cents(
        sum(
            (Decimal(str(item["price"])) * int(item["quantity"]) for item in order["items"]),
            Decimal(0),
        )
    )
    tax = _cents(subtotal * TAX_RATE)
    return {"subtotal": float(subtotal), "tax": float(tax), "total": float(subtotal + tax)}
