"""Unit tests of the built-in calculate-order-total handler."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.handlers.orders import calculate_order_total

SPEC_INPUT = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}


def test_spec_example():
    output = calculate_order_total(SPEC_INPUT)
    assert output == {"subtotal": 46.97, "tax": 3.76, "total": 50.73}
    assert all(type(value) is float for value in output.values())


def test_context_is_optional_and_ignored():
    assert calculate_order_total(SPEC_INPUT, object()) == calculate_order_total(SPEC_INPUT)


def test_input_is_not_modified():
    payload: dict[str, Any] = {"orderId": "o", "items": [{"id": "a", "quantity": 3, "price": 0.1}]}
    calculate_order_total(payload)
    assert payload == {"orderId": "o", "items": [{"id": "a", "quantity": 3, "price": 0.1}]}


def test_no_float_drift():
    # 3 * 0.1 is 0.30000000000000004 in floats; the handler must say 0.3.
    output = calculate_order_total({"items": [{"id": "a", "quantity": 3, "price": 0.1}]})
    assert output == {"subtotal": 0.3, "tax": 0.02, "total": 0.32}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        # 0.125 rounds half-up to 0.13 (banker's rounding would give 0.12)
        ([{"quantity": 1, "price": 0.125}], {"subtotal": 0.13, "tax": 0.01, "total": 0.14}),
        ([{"quantity": 0.5, "price": 0.25}], {"subtotal": 0.13, "tax": 0.01, "total": 0.14}),
        # 0.19 * 0.08 = 0.0152 -> 0.02 ; 0.06 * 0.08 = 0.0048 -> 0.00
        ([{"quantity": 1, "price": 0.19}], {"subtotal": 0.19, "tax": 0.02, "total": 0.21}),
        ([{"quantity": 1, "price": 0.06}], {"subtotal": 0.06, "tax": 0.0, "total": 0.06}),
        ([{"quantity": 0, "price": 99.99}], {"subtotal": 0.0, "tax": 0.0, "total": 0.0}),
        # 6.25 * 0.08 = 0.5 exactly
        ([{"quantity": 1, "price": 6.25}], {"subtotal": 6.25, "tax": 0.5, "total": 6.75}),
    ],
)
def test_rounding_examples(items: list[dict[str, Any]], expected: dict[str, float]):
    payload = {"orderId": "o", "items": [{"id": f"i{n}", **item} for n, item in enumerate(items)]}
    assert calculate_order_total(payload) == expected


def test_an_item_without_price_is_an_error():
    with pytest.raises(KeyError):
        calculate_order_total({"orderId": "o", "items": [{"id": "a", "quantity": 1}]})


items_strategy = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1_000_000), st.integers(0, 50)),
    min_size=1,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(items=items_strategy)
def test_totals_match_integer_cent_arithmetic(items: list[tuple[int, int]]):
    """Prices arrive as JSON numbers (floats) with whole cents; quantities are small integers."""
    payload = {
        "orderId": "ORD",
        "items": [
            {"id": f"I{n}", "quantity": quantity, "price": cents / 100}
            for n, (cents, quantity) in enumerate(items)
        ],
    }
    subtotal_cents = sum(cents * quantity for cents, quantity in items)
    # 8 % of the subtotal, rounded half-up to whole cents, in integers only
    tax_cents = (subtotal_cents * 8 + 50) // 100
    total_cents = subtotal_cents + tax_cents

    output = calculate_order_total(payload)

    assert set(output) == {"subtotal", "tax", "total"}
    assert output["subtotal"] == subtotal_cents / 100
    assert output["tax"] == tax_cents / 100
    assert output["total"] == total_cents / 100
    # and exactly those decimals when printed, as a JSON encoder would
    assert Decimal(repr(output["subtotal"])) == Decimal(subtotal_cents) / 100
    assert Decimal(repr(output["tax"])) == Decimal(tax_cents) / 100
    assert Decimal(repr(output["total"])) == Decimal(total_cents) / 100
    assert round(output["subtotal"] * 100) + round(output["tax"] * 100) == round(
        output["total"] * 100
    )
