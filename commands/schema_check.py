"""A fast is-valid check for a subset of JSON Schema 2020-12, built from closures.

``jsonschema.Draft202012Validator`` builds attrs objects and generators for every subschema
it descends into; for the small schemas of task definitions that costs far more than the
checks themselves. :func:`compile_check` turns a schema into nested closures once (no code
is generated from the schema), so a check is a few ``isinstance`` tests, comparisons and
dict lookups. The contract, held by the differential tests:

* a True means ``Draft202012Validator(schema).is_valid`` is True too;
* for JSON values (None, bool, int, float, str, list, dict) the answer is exactly
  ``is_valid``'s, so a False is the answer and jsonschema is only asked for the errors;
* for other numbers (Decimal, Fraction, complex...), or if a check raises, the answer is
  False, meaning "ask jsonschema", never a guess.

Where jsonschema 4.x and the spec could differ we copy jsonschema: its type checker (bool
is not a number, 1.0 is an integer), its very comparisons for bounds (NaN passes them
all), ``re.search`` for ``pattern``, and its ``equal`` for ``enum``/``const``. A schema
outside the subset, or with keyword values the meta-schema refuses, gives None.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

# A subschema naming another draft is validated by jsonschema with that draft's rules
# (``evolve`` calls ``validator_for``), so only 2020-12 (or no ``$schema``) is ours.
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# No error ever comes from these (``format`` is an annotation without a format checker).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
    | {"writeOnly", "format", "$schema"}
)
_OBJECT = frozenset({"properties", "required", "additionalProperties"})
_ARRAY = frozenset({"items", "minItems", "maxItems"})
_STRING = frozenset({"minLength", "maxLength", "pattern"})
_NUMBER = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_GENERIC = frozenset({"type", "enum", "const", "allOf", "anyOf", "oneOf", "not"})
_SUPPORTED = _ANNOTATIONS | _OBJECT | _ARRAY | _STRING | _NUMBER | _GENERIC


class _Unsupported(Exception):
    """Compile time: the schema is outside the subset."""


class _Defer(Exception):
    """Check time: a number type whose semantics we do not copy (Decimal, complex...)."""


def compile_check(schema: Any) -> Check | None:
    """The fast check for ``schema``, or None if it is outside the supported subset."""
    try:
        check = _compile(schema)
    except (_Unsupported, RecursionError):
        return None

    def is_valid(document: Any) -> bool:
        try:
            return check(document)
        except Exception:  # _Defer, or what jsonschema may well raise on too: let it answer
            return False

    return is_valid


def _always(x: Any) -> bool:
    return True


def _never(x: Any) -> bool:
    return False


def _is_number(x: Any) -> bool:
    t = type(x)
    if t is int or t is float:
        return True
    if t is bool or not isinstance(x, numbers.Number):
        return False
    raise _Defer


def _is_integer(x: Any) -> bool:
    t = type(x)
    if t is float:
        return bool(x.is_integer())
    return t is int or _is_number(x)  # not int or float here: False, or _Defer


_TYPES: dict[str, Check] = {
    "null": lambda x: x is None,
    "boolean": lambda x: isinstance(x, bool),
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "number": _is_number,
    "integer": _is_integer,
}


def _compile(schema: Any) -> Check:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or not _SUPPORTED.issuperset(schema):
        raise _Unsupported
    if "$schema" in schema and schema["$schema"] not in (_DIALECT, _DIALECT + "#"):
        raise _Unsupported
    types = _type_names(schema.get("type", list(_TYPES)))
    # Every part is built (so every subschema is vetted), but only those for the allowed
    # types are kept. With one type, that kind's part does the type test (on_other=False).
    single = types[0] if len(types) == 1 else None
    parts = {
        "object": _object_part(schema, single != "object"),
        "array": _array_part(schema, single != "array"),
        "string": _string_part(schema, single != "string"),
        "number": _number_part(schema, single != "number"),
    }
    kept: list[Check] = []
    if "type" in schema and single not in parts:
        kept.append(_type_check(types))
    for kind, part in parts.items():
        if kind == single:
            kept.append(part or _TYPES[kind])
        elif part is not None and (kind in types or (kind == "number" and "integer" in types)):
            kept.append(part)
    kept.extend(_generic_parts(schema))
    return _all(kept)


def _all(parts: list[Check]) -> Check:
    if not parts:
        return _always
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda x: first(x) and second(x)
    checks = tuple(parts)

    def all_of(x: Any) -> bool:
        for check in checks:  # noqa: SIM110 - a loop is faster than all() over a generator
            if not check(x):
                return False
        return True

    return all_of


def _type_names(value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or len(set(map(repr, names))) != len(names):
        raise _Unsupported
    if not all(isinstance(name, str) and name in _TYPES for name in names):
        raise _Unsupported
    return names


def _type_check(names: list[str]) -> Check:
    checks = tuple(_TYPES[name] for name in names)
    if len(checks) == 1:
        return checks[0]
    return lambda x: any(check(x) for check in checks)


def _number(schema: dict[str, Any], keyword: str, count: bool = False) -> int | float | None:
    """A bound, or (``count``) a ``nonNegativeInteger``, where 2.0 counts: it is an
    "integer". Absent: None; anything else the meta-schema refuses: unsupported."""
    if keyword not in schema:
        return None
    value = schema[keyword]
    if type(value) is not int and type(value) is not float:
        raise _Unsupported
    if count and (value < 0 or not float(value).is_integer()):
        raise _Unsupported
    return value


def _object_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        raise _Unsupported
    if not all(isinstance(k, str) for k in [*props, *required]) or len(set(required)) != len(
        required
    ):
        raise _Unsupported
    compiled = [(name, _compile(sub)) for name, sub in props.items()]
    extra = _compile(schema.get("additionalProperties", True))
    if not _OBJECT.intersection(schema):
        return None
    checks = tuple((name, check) for name, check in compiled if check is not _always)
    needed, names, forbid = frozenset(required), frozenset(props), extra is _never

    def check_object(x: Any) -> bool:
        if not isinstance(x, dict):
            return on_other
        if needed and not x.keys() >= needed:
            return False
        for name, check in checks:
            if name in x and not check(x[name]):
                return False
        if forbid:
            return names.issuperset(x)
        if extra is not _always:
            for name, value in x.items():
                if name not in names and not extra(value):
                    return False
        return True

    return check_object


def _array_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    low, high = _number(schema, "minItems", True), _number(schema, "maxItems", True)
    item = _compile(schema.get("items", True))
    if not _ARRAY.intersection(schema):
        return None

    def check_array(x: Any) -> bool:
        if not isinstance(x, list):
            return on_other
        n = len(x)
        if (low is not None and n < low) or (high is not None and n > high):
            return False
        if item is not _always:
            for value in x:
                if not item(value):
                    return False
        return True

    return check_array


def _string_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    low, high = _number(schema, "minLength", True), _number(schema, "maxLength", True)
    search = None
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _Unsupported
        try:
            search = re.compile(schema["pattern"]).search
        except re.error as exc:
            raise _Unsupported from exc
    if not _STRING.intersection(schema):
        return None

    def check_string(x: Any) -> bool:
        if not isinstance(x, str):
            return on_other
        n = len(x)  # code points, as jsonschema (and the spec) counts
        if (low is not None and n < low) or (high is not None and n > high):
            return False
        return search is None or search(x) is not None

    return check_string


def _number_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    low, high = _number(schema, "minimum"), _number(schema, "maximum")
    above, below = _number(schema, "exclusiveMinimum"), _number(schema, "exclusiveMaximum")
    if not _NUMBER.intersection(schema):
        return None

    def check_number(x: Any) -> bool:
        t = type(x)
        if t is not int and t is not float and not _is_number(x):
            return on_other
        # jsonschema's own comparisons: with NaN each is False, so NaN passes every bound.
        return not (
            (low is not None and x < low)
            or (high is not None and x > high)
            or (above is not None and x <= above)
            or (below is not None and x >= below)
        )

    return check_number


def _generic_parts(schema: dict[str, Any]) -> list[Check]:
    parts: list[Check] = []
    if "enum" in schema:
        parts.append(_enum_check(schema["enum"]))
    if "const" in schema:
        const = schema["const"]
        parts.append(lambda x: _equal(x, const))
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema:
            subs = schema[keyword]
            if not isinstance(subs, list) or not subs:
                raise _Unsupported
            parts.append(_combine(keyword, [_compile(sub) for sub in subs]))
    if "not" in schema:
        negated = _compile(schema["not"])
        parts.append(lambda x: not negated(x))
    return parts


def _combine(keyword: str, subs: list[Check]) -> Check:
    if keyword == "allOf":
        return _all(subs)
    checks = tuple(subs)
    if keyword == "anyOf":
        return lambda x: any(check(x) for check in checks)

    def one_of(x: Any) -> bool:
        found = False
        for check in checks:
            if check(x):
                if found:
                    return False
                found = True
        return found

    return one_of


def _enum_check(values: Any) -> Check:
    if not isinstance(values, list):
        raise _Unsupported
    members = tuple(values)
    if not all(type(v) is str for v in members):
        return lambda x: any(_equal(each, x) for each in members)
    strings = frozenset(members)
    # For an exact str, equal() is ==, which is what the set lookup does.
    return lambda x: x in strings if type(x) is str else any(_equal(e, x) for e in members)


_TRUE, _FALSE = object(), object()


def _unbool(value: Any) -> Any:
    return _TRUE if value is True else _FALSE if value is False else value


def _equal(one: Any, two: Any) -> bool:
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
        return all(_equal(i, j) for i, j in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        if len(one) != len(two):
            return False
        return all(key in two and _equal(value, two[key]) for key, value in one.items())
    return bool(_unbool(one) == _unbool(two))
