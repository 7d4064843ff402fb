"""Built-in handler of ``calculate-order-total``: subtotal, 8% tax (half-up, cents), total."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from workers.handlers import inline

TAX_RATE = Decimal("0.08")
CENT = Decimal("0.01")


@inline  # microseconds of arithmetic: a thread hop would cost more than the work
def calculate_order_total(payload: dict[str, Any], context: Any = None) -> dict[str, float]:
    """Sum quantity x price over the items, add tax. Decimal arithmetic: no float drift."""
    subtotal = sum(
        (Decimal(str(item["quantity"])) * Decimal(str(item["price"])) for item in payload["items"]),
        Decimal(0),
    ).quantize(CENT, rounding=ROUND_HALF_UP)
    tax = (subtotal * TAX_RATE).quantize(CENT, rounding=ROUND_HALF_UP)
    total = subtotal + tax
    return {"subtotal": float(subtotal), "tax": float(tax), "total": float(total)}
