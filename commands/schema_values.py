"""How jsonschema 4.x sees a single value, copied for the fast check (commands/schema_check.py):
its type checker (bool is not a number, 1.0 is an integer), its very comparisons for
bounds (NaN passes them all), ``re.search`` for ``pattern``, and its ``equal`` for
``enum``/``const``. Numbers of other types (Decimal, Fraction, complex...) raise
``Defer``: the caller lets jsonschema answer for them."""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


class Unsupported(Exception):
    """Compile time: the schema is outside the subset."""


class Defer(Exception):
    """Check time: a number type whose semantics we do not copy (Decimal, complex...)."""


def is_number(x: Any) -> bool:
    t = type(x)
    if t is int or t is float:
        return True
    if t is bool or not isinstance(x, numbers.Number):
        return False
    raise Defer


def is_integer(x: Any) -> bool:
    t = type(x)
    if t is float:
        return bool(x.is_integer())
    return t is int or is_number(x)  # not int or float here: False, or Defer


TYPES: dict[str, Check] = {
    "null": lambda x: x is None,
    "boolean": lambda x: isinstance(x, bool),
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "number": is_number,
    "integer": is_integer,
}


def type_names(value: Any) -> list[str]:
    """The names of a ``type`` keyword (one or a list), each known, none repeated."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or len(set(map(repr, names))) != len(names):
        raise Unsupported
    if not all(isinstance(name, str) and name in TYPES for name in names):
        raise Unsupported
    return names


def type_check(names: list[str]) -> Check:
    checks = tuple(TYPES[name] for name in names)
    if len(checks) == 1:
        return checks[0]
    return lambda x: any(check(x) for check in checks)


def bound(schema: dict[str, Any], keyword: str, count: bool = False) -> int | float | None:
    """A bound, or (``count``) a ``nonNegativeInteger``, where 2.0 counts: it is an
    "integer". Absent: None; anything else the meta-schema refuses: unsupported."""
    if keyword not in schema:
        return None
    value = schema[keyword]
    if type(value) is not int and type(value) is not float:
        raise Unsupported
    if count and (value < 0 or not float(value).is_integer()):
        raise Unsupported
    return value


def string_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    low, high = bound(schema, "minLength", True), bound(schema, "maxLength", True)
    search = None
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise Unsupported
        try:
            search = re.compile(schema["pattern"]).search
        except re.error as exc:
            raise Unsupported from exc
    if not STRING_KEYWORDS.intersection(schema):
        return None

    def check_string(x: Any) -> bool:
        if not isinstance(x, str):
            return on_other
        n = len(x)  # code points, as jsonschema (and the spec) counts
        if (low is not None and n < low) or (high is not None and n > high):
            return False
        return search is None or search(x) is not None

    return check_string


def number_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    low, high = bound(schema, "minimum"), bound(schema, "maximum")
    above, below = bound(schema, "exclusiveMinimum"), bound(schema, "exclusiveMaximum")
    if not NUMBER_KEYWORDS.intersection(schema):
        return None

    def check_number(x: Any) -> bool:
        t = type(x)
        if t is not int and t is not float and not is_number(x):
            return on_other
        # jsonschema's own comparisons: with NaN each is False, so NaN passes every bound.
        return not (
            (low is not None and x < low)
            or (high is not None and x > high)
            or (above is not None and x <= above)
            or (below is not None and x >= below)
        )

    return check_number


def enum_check(values: Any) -> Check:
    if not isinstance(values, list):
        raise Unsupported
    members = tuple(values)
    if not all(type(v) is str for v in members):
        return lambda x: any(equal(each, x) for each in members)
    strings = frozenset(members)
    # For an exact str, equal() is ==, which is what the set lookup does.
    return lambda x: x in strings if type(x) is str else any(equal(e, x) for e in members)


_TRUE, _FALSE = object(), object()


def _unbool(value: Any) -> Any:
    return _TRUE if value is True else _FALSE if value is False else value


def equal(one: Any, two: Any) -> bool:
    """``jsonschema._utils.equal``, copied: 1 == 1.0 but True != 1, any Sequence against
    any Sequence (a tuple equals a list), mappings deeply, and identity first (so
    ``math.nan`` equals itself, yet not another NaN)."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        if len(one) != len(two):
            return False
        return all(equal(i, j) for i, j in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        if len(one) != len(two):
            return False
        return all(key in two and equal(value, two[key]) for key, value in one.items())
    return bool(_unbool(one) == _unbool(two))
