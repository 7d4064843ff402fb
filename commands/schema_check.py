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

Where jsonschema 4.x and the spec could differ, the checks of single values copy
jsonschema (commands/schema_values.py). A schema outside the subset, or with keyword
values the meta-schema refuses, gives None.
"""

from __future__ import annotations

from typing import Any

from commands.schema_values import (
    NUMBER_KEYWORDS,
    STRING_KEYWORDS,
    TYPES,
    Check,
    Unsupported,
    bound,
    enum_check,
    equal,
    number_part,
    string_part,
    type_check,
    type_names,
)

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
_GENERIC = frozenset({"type", "enum", "const", "allOf", "anyOf", "oneOf", "not"})
_SUPPORTED = _ANNOTATIONS | _OBJECT | _ARRAY | STRING_KEYWORDS | NUMBER_KEYWORDS | _GENERIC


def compile_check(schema: Any) -> Check | None:
    """The fast check for ``schema``, or None if it is outside the supported subset."""
    try:
        check = _compile(schema)
    except (Unsupported, RecursionError):
        return None

    def is_valid(document: Any) -> bool:
        try:
            return check(document)
        except Exception:  # Defer, or what jsonschema may well raise on too: let it answer
            return False

    return is_valid


def _always(x: Any) -> bool:
    return True


def _never(x: Any) -> bool:
    return False


def _compile(schema: Any) -> Check:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or not _SUPPORTED.issuperset(schema):
        raise Unsupported
    if "$schema" in schema and schema["$schema"] not in (_DIALECT, _DIALECT + "#"):
        raise Unsupported
    types = type_names(schema.get("type", list(TYPES)))
    # Every part is built (so every subschema is vetted), but only those for the allowed
    # types are kept. With one type, that kind's part does the type test (on_other=False).
    single = types[0] if len(types) == 1 else None
    parts = {
        "object": _object_part(schema, single != "object"),
        "array": _array_part(schema, single != "array"),
        "string": string_part(schema, single != "string"),
        "number": number_part(schema, single != "number"),
    }
    kept: list[Check] = []
    if "type" in schema and single not in parts:
        kept.append(type_check(types))
    for kind, part in parts.items():
        if kind == single:
            kept.append(part or TYPES[kind])
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


def _object_part(schema: dict[str, Any], on_other: bool) -> Check | None:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        raise Unsupported
    if not all(isinstance(k, str) for k in [*props, *required]) or len(set(required)) != len(
        required
    ):
        raise Unsupported
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
    low, high = bound(schema, "minItems", True), bound(schema, "maxItems", True)
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


def _generic_parts(schema: dict[str, Any]) -> list[Check]:
    parts: list[Check] = []
    if "enum" in schema:
        parts.append(enum_check(schema["enum"]))
    if "const" in schema:
        const = schema["const"]
        parts.append(lambda x: equal(x, const))
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema:
            subs = schema[keyword]
            if not isinstance(subs, list) or not subs:
                raise Unsupported
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
