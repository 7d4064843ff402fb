"""The fast schema check against jsonschema: a differential property test over the whole
supported subset, the edge cases of jsonschema's semantics spelled out, and
SchemaValidator's violations equal to ``schema_violations`` for the built-in definitions."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from commands.catalog import BUILTIN_DIR, SchemaValidator, load_dir, schema_violations
from commands.schema_check import compile_check
from commands.schema_values import equal as copied_equal

DIALECT = "https://json-schema.org/draft/2020-12/schema"
NAMES = ["a", "b", "c", "d"]
ALPHABET = "aAbBZ09 _é\u0301😀\u0661\n"  # U+0661: ARABIC-INDIC DIGIT ONE
# Each pattern with strings it matches; constants() also puts text before and after them,
# which is where re.search differs from re.match and where "$" meets a final newline.
PATTERNS: dict[str, list[str]] = {
    "^[A-Z]{3}$": ["USD", "USD\n"], "^a": ["a", "ab"], "b$": ["b", "ab"], "[0-9]": ["0", "a1"],
    "^$": ["", "\n"], "^.{2,3}$": ["ab", "abc"], "é": ["é", "aé"], r"^\w+$": ["a_1", "é\u0661"],
    r"\d": ["\u0661", "a1"], "^(ab)+$": ["ab", "abab"], "(?i)^ab": ["AB", "aBc"],
    "^[^a]*$": ["", "bcd"],
}  # fmt: skip
Draw = Callable[[st.SearchStrategy[Any]], Any]
NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
MUTANTS = 6  # per schema, and as many mutants of mutants
TYPE_NAMES = ["null", "boolean", "object", "array", "number", "string", "integer"]
BOUNDS = [-1, 0, 1, 2, 3, 10, 0.5, 1.0, 2.5, -0.0, 2**53, 2**53 + 1, 1e300]
TRICKY: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    0.5,
    -0.0,
    "",
    "a",
    "ab",
    "USD\n",
    [],
    {},
    [1],
]
TRICKY += [2**53 + 1, float(2**53), math.nan, math.inf, -math.inf, 10**30]

# --- JSON values and schemas ----------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(TRICKY),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ALPHABET, max_size=4),
)
keys = st.sampled_from(NAMES) | st.text(ALPHABET, max_size=2)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def _opt(**keywords: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=keywords)


def _some(
    typed: st.SearchStrategy[Any], **keywords: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Schemas with at least one of ``keywords`` (so they constrain something), and
    ``type`` from ``typed`` or absent."""

    def build(first: str) -> st.SearchStrategy[dict[str, Any]]:
        rest = {k: v for k, v in keywords.items() if k != first}
        return st.fixed_dictionaries({first: keywords[first]}, optional={"type": typed, **rest})

    return st.sampled_from(sorted(keywords)).flatmap(build)


counts = st.sampled_from([0, 1, 2, 3, 2.0])
bounds = st.sampled_from(BOUNDS) | st.integers(-3, 5) | st.floats(-10, 10)
type_values = st.sampled_from(TYPE_NAMES) | st.lists(
    st.sampled_from(TYPE_NAMES), min_size=1, max_size=3, unique=True
)
annotation_schemas = _opt(
    title=st.text(max_size=3),
    description=st.text(max_size=3),
    default=st.sampled_from(TRICKY),
    examples=st.lists(st.sampled_from(TRICKY), max_size=2),
    format=st.sampled_from(["date-time", "email", "uuid", "no-such-format"]),
    deprecated=st.booleans(),
    readOnly=st.booleans(),
    writeOnly=st.booleans(),
    **{"$comment": st.text(max_size=3)},
)
string_schemas = _some(
    st.just("string") | type_values,
    minLength=counts,
    maxLength=counts,
    pattern=st.sampled_from(sorted(PATTERNS)),
)
number_schemas = _some(
    st.sampled_from(["number", "integer"]) | type_values,
    minimum=bounds,
    maximum=bounds,
    exclusiveMinimum=bounds,
    exclusiveMaximum=bounds,
)
leaf_schemas = st.one_of(
    st.booleans(),
    annotation_schemas,
    string_schemas,
    string_schemas,
    number_schemas,
    number_schemas,
    st.fixed_dictionaries({"type": type_values}),
    st.fixed_dictionaries({"enum": st.lists(json_values, max_size=4)}),
    st.fixed_dictionaries({"const": json_values}),
    _opt(
        type=type_values, minLength=counts, minimum=bounds, minItems=counts, enum=st.lists(scalars)
    ),
)


def _merge(parts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    objects = _some(
        st.just("object") | type_values,
        properties=st.dictionaries(
            st.sampled_from(NAMES), children | st.sampled_from([True, {}]), max_size=3
        ),
        required=st.lists(st.sampled_from(NAMES), max_size=3, unique=True),
        additionalProperties=st.booleans() | children | string_schemas | number_schemas,
    )
    arrays = _some(st.just("array") | type_values, items=children, minItems=counts, maxItems=counts)
    subschemas = st.lists(children, min_size=1, max_size=3)
    combinators = st.one_of(
        *(st.fixed_dictionaries({k: subschemas}) for k in ("allOf", "anyOf", "oneOf")),
        st.fixed_dictionaries({"not": children}),
    )
    shapes = objects | arrays | string_schemas | number_schemas
    merged = st.tuples(shapes, combinators, annotation_schemas).map(_merge)
    return st.one_of(objects, objects, arrays, arrays, combinators, merged)


schemas = st.recursive(leaf_schemas, _extend, max_leaves=8)
root_schemas = st.tuples(schemas, _opt(**{"$schema": st.sampled_from([DIALECT, DIALECT + "#"])}))
root_schemas = root_schemas.map(lambda t: {**t[0], **t[1]} if isinstance(t[0], dict) else t[0])

# --- Instances derived from a schema, then mutated -------------------------------------


def _kind(schema: dict[str, Any]) -> list[str]:
    if "type" in schema:
        return [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
    for kind, words in [
        ("object", {"properties", "required", "additionalProperties"}),
        ("array", {"items", "minItems", "maxItems"}),
        ("string", {"minLength", "maxLength", "pattern"}),
        ("number", set(NUMBER_KEYWORDS)),
    ]:
        if words & schema.keys():
            return [kind]
    return TYPE_NAMES


def sample(draw: Draw, schema: Any, depth: int = 0) -> Any:
    """A value that mostly conforms to ``schema`` (it does not try hard on combinations)."""
    if not isinstance(schema, dict) or depth > 4:
        return draw(json_values)
    options = ["type"]
    options += [k for k in ("const", "enum", "allOf", "anyOf", "oneOf") if schema.get(k)]
    option = draw(st.sampled_from(options))
    if option == "const":
        return draw(st.sampled_from([schema["const"], copy.deepcopy(schema["const"])]))
    if option == "enum":
        return draw(st.sampled_from(schema["enum"]))
    if option != "type":
        return sample(draw, draw(st.sampled_from(schema[option])), depth + 1)
    kind = draw(st.sampled_from(_kind(schema)))
    if kind == "object":
        props, required = schema.get("properties", {}), schema.get("required", [])
        out = {
            name: sample(draw, props.get(name, True), depth + 1)
            for name in sorted({*props, *required})
            if name in required or draw(st.booleans())
        }
        if draw(st.booleans()):
            extra = schema.get("additionalProperties", True)
            out[draw(st.sampled_from([*NAMES, "x"]))] = sample(draw, extra, depth + 1)
        return out
    if kind == "array":
        low = int(schema.get("minItems", 0))
        high = max(low, min(int(schema.get("maxItems", low + 3)), low + 3))
        item = schema.get("items", True)
        return [sample(draw, item, depth + 1) for _ in range(draw(st.integers(low, high)))]
    if kind == "string":
        if "pattern" in schema and draw(st.booleans()):
            return draw(st.from_regex(schema["pattern"]))
        low = int(schema.get("minLength", 0))
        size = draw(st.integers(low, max(low, int(schema.get("maxLength", low + 3)))))
        return draw(st.text(ALPHABET, min_size=size, max_size=size))
    if kind in ("number", "integer"):
        limits = [schema[k] for k in NUMBER_KEYWORDS if k in schema]
        near = [b + d for b in limits for d in (-1, -0.5, 0, 0.5, 1)] + limits
        near += [int(b) for b in near if math.isfinite(b)]
        if limits and draw(st.booleans()):
            return draw(st.sampled_from(limits))
        return draw(st.sampled_from([*near, 0]) | st.integers(-5, 12) | st.sampled_from(TRICKY))
    return draw(st.sampled_from([None, True, False]))


def constants(schema: Any) -> list[Any]:
    """The values a schema's boundaries are made of, and values just past them: bounds
    (as int and float), strings and arrays of the bounding lengths, enum and const
    members. Mutants draw leaves from these, so boundaries are hit often."""
    found: list[Any] = []
    if not isinstance(schema, dict):
        return found
    for keyword, value in schema.items():
        if keyword in NUMBER_KEYWORDS:
            found += [value, float(value), *([int(value)] if math.isfinite(value) else [])]
        elif keyword in ("minLength", "maxLength", "minItems", "maxItems"):
            n = int(value)
            found += ["é" * n, "😀" * (n + 1), "a" * max(n - 1, 0), [None] * n, [0] * (n + 1)]
        elif keyword == "pattern":
            found += [f"{a}{m}{b}" for m in PATTERNS[value] for a in ("", "x") for b in ("", "\n")]
        elif keyword == "enum":
            found += value
        elif keyword == "const":
            found.append(value)
        elif keyword in ("allOf", "anyOf", "oneOf"):
            found += [c for sub in value for c in constants(sub)]
        elif keyword == "properties":
            found += [c for sub in value.values() for c in constants(sub)]
        elif keyword in ("items", "additionalProperties", "not"):
            found += constants(value)
    return found


def mutate(rng: random.Random, value: Any, pool: list[Any]) -> Any:
    """``value`` with one change somewhere: a key dropped or added, an item dropped or
    added, or a leaf replaced by a neighbour (1 → 1.0, True, 2...), a tricky value or one
    of the schema's ``pool`` of constants. (A seeded Random rather than draws: many
    mutants per schema stay cheap.)"""
    how = rng.randrange(4)
    if isinstance(value, dict) and value and how < 3:
        key = rng.choice(sorted(value))
        if how == 0:
            return {k: v for k, v in value.items() if k != key}
        if how == 1:
            return {**value, key: mutate(rng, value[key], pool)}
        return {**value, rng.choice([*NAMES, "x", ""]): rng.choice(TRICKY)}
    if isinstance(value, list) and value and how < 3:
        index = rng.randrange(len(value))
        if how == 0:
            return value[:index] + value[index + 1 :]
        if how == 1:
            return [*value[:index], mutate(rng, value[index], pool), *value[index + 1 :]]
        return [*value, rng.choice(TRICKY)]
    options = TRICKY + pool * 4
    if (type(value) is float and math.isfinite(value)) or type(value) is int:
        options += [value + 1, value - 1, float(value), int(value), -value, value == 1] * 3
    if isinstance(value, str):
        options += [value + "a", value[1:], value + "\n", value.upper(), value * 2] * 2
        options += [value + "é", value + "😀", value + "e\u0301", value[:-1]] * 2
    return rng.choice(options)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, list[Any]]:
    """A schema and instances for it: samples, one JSON value, and many mutants."""
    schema = draw(root_schemas)
    samples = [sample(draw, schema) for _ in range(3)]
    rng, pool = draw(st.randoms(use_true_random=False)), constants(schema)
    mutants = [mutate(rng, rng.choice(samples), pool) for _ in range(MUTANTS)]
    mutants += [mutate(rng, mutate(rng, rng.choice(samples), pool), pool) for _ in range(MUTANTS)]
    return schema, [*samples, draw(json_values), *mutants]


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_fast_check_equals_jsonschema(case: tuple[Any, list[Any]]) -> None:
    schema, instances = case
    check = compile_check(schema)
    assert check is not None, schema
    validator = Draft202012Validator(schema)
    for instance in instances:
        expected = validator.is_valid(instance)
        event("valid" if expected else "invalid")
        assert check(instance) == expected, (schema, instance)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(leaf_schemas)
def test_leaf_keywords_equal_jsonschema(schema: Any) -> None:
    """Cheap and many: one keyword group, against its constants, their neighbours and the
    tricky values (the boundaries are where the off-by-ones hide)."""
    check = compile_check(schema)
    assert check is not None
    validator = Draft202012Validator(schema)
    rng = random.Random(0)
    pool = constants(schema)
    for instance in [*pool, *TRICKY, *(mutate(rng, c, pool) for c in pool * 3)]:
        assert check(instance) == validator.is_valid(instance), (schema, instance)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_equal_is_jsonschemas_equal(one: Any, two: Any) -> None:
    from jsonschema._utils import equal  # private: the function ``copied_equal`` copies

    for a, b in [(one, two), (one, copy.deepcopy(one)), (one, one)]:
        assert copied_equal(a, b) == bool(equal(a, b))


# --- The edge cases, spelled out (each also checked against jsonschema) ----------------

EDGES: list[tuple[Any, Any, bool]] = [
    # bool is not a number, and a number bound does not apply to it
    ({"type": "integer"}, True, False),
    ({"type": "number"}, False, False),
    ({"type": "boolean"}, 0, False),
    ({"minimum": 5}, True, True),
    ({"enum": [1]}, True, False),
    ({"enum": [True]}, 1, False),
    ({"const": [0, {"a": 1}]}, [False, {"a": True}], False),
    # ...but 1 == 1.0, deeply; and 1.0 (even 1e300) is an integer in 2020-12
    ({"enum": [1]}, 1.0, True),
    ({"const": [1, {"a": 2}]}, [1.0, {"a": 2.0}], True),
    ({"const": {"a": 1}}, {"a": 1, "b": 2}, False),
    ({"type": "integer"}, 1.0, True),
    ({"type": "integer"}, 1.5, False),
    ({"type": "integer"}, 1e300, True),
    ({"type": "integer"}, 10**400, True),
    ({"type": "integer", "maximum": 2**53}, 2**53 + 1, False),  # int vs float compares exactly
    ({"maximum": 1e308}, 10**400, False),
    ({"minimum": 1, "maximum": 1}, 1.0, True),
    ({"exclusiveMinimum": 0}, 0, False),
    ({"exclusiveMinimum": 0}, 0.0, False),
    ({"exclusiveMaximum": 1.0}, 1, False),
    ({"exclusiveMinimum": 0, "exclusiveMaximum": 1}, 0.5, True),
    # NaN passes every bound (each comparison is False); inf is a number, not an integer
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, math.nan, True),
    ({"exclusiveMinimum": 0, "maximum": -1}, math.nan, True),
    ({"type": "integer"}, math.nan, False),
    ({"type": "integer"}, math.inf, False),
    ({"type": "number", "maximum": 1e308}, math.inf, False),
    ({"enum": [math.nan]}, math.nan, True),  # equal() tries identity first...
    ({"enum": [math.nan]}, float("nan"), False),  # ...and another NaN is not equal
    # empty, true and false schemas; empty enum
    ({}, {"anything": [1, None]}, True),
    (True, None, True),
    (False, None, False),
    ({"enum": []}, None, False),
    # keywords apply to their own type only
    ({"required": ["a"]}, "not an object", True),
    ({"required": ["a"], "properties": {"b": {}}}, {"b": 1}, False),
    ({"maxLength": 1, "items": False, "minimum": 3}, {"x": 1}, True),
    ({"items": {"type": "string"}}, "not an array", True),
    ({"items": False}, [], True),
    ({"items": False}, [None], False),
    ({"minItems": 2.0}, [1], False),  # 2.0 is a valid count
    ({"type": "array"}, (1, 2), False),  # a tuple is not an array...
    ({"const": [1, 2]}, (1, 2), True),  # ...but equals a list
    ({"additionalProperties": False, "properties": {"a": {}}}, {"a": 1}, True),
    ({"additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}, False),
    ({"additionalProperties": {"type": "string"}, "properties": {"a": {}}}, {"a": 1}, True),
    ({"additionalProperties": {"type": "string"}}, {"x": 1}, False),
    # lengths count code points: one astral character is one, é as e + U+0301 is two
    ({"maxLength": 1}, "😀", True),
    ({"minLength": 2}, "😀", False),
    ({"maxLength": 1}, "e\u0301", False),
    # pattern is Python's re.search: unanchored, $ matches before a final newline, \d is
    # any Unicode digit (ECMA-262 would say no to the last two)
    ({"pattern": "a"}, "ba", True),
    ({"pattern": "^a"}, "ba", False),
    ({"pattern": "^[A-Z]{3}$"}, "USD\n", True),
    ({"pattern": r"^\d+$"}, "\u0661\u0662", True),
    # combinators
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1.5, True),
    ({"anyOf": [{"type": "string"}, {"minimum": 3}]}, 2, False),
    ({"allOf": [{"minimum": 1}, {"maximum": 2}]}, 3, False),
    ({"not": {"type": "string"}}, 1, True),
    ({"not": {}}, 1, False),
    # annotations never fail, format included (no format checker)
    ({"format": "email", "title": "t", "default": 1, "deprecated": True}, "no email", True),
    ({"$schema": DIALECT, "type": "string"}, "s", True),
]


@pytest.mark.parametrize(("schema", "instance", "valid"), EDGES)
def test_edge_case(schema: Any, instance: Any, valid: bool) -> None:
    check = compile_check(schema)
    assert check is not None
    assert Draft202012Validator(schema).is_valid(instance) is valid
    assert check(instance) is valid


UNSUPPORTED: list[Any] = [
    {"$ref": "#"},
    {"$defs": {"a": {}}},
    {"$id": "https://example.com/s"},
    {"x-unknown": 1},
    {"definitions": {}},
    {"patternProperties": {"^a": {}}},
    {"prefixItems": [{}]},
    {"dependentRequired": {"a": ["b"]}},
    {"if": {}, "then": {}},
    {"uniqueItems": True},
    {"multipleOf": 2},
    {"contains": {}},
    {"propertyNames": {}},
    {"unevaluatedProperties": False},
    {"minProperties": 1},
    {"properties": {"a": {"items": {"$ref": "#"}}}},  # nested
    {"type": "string", "items": {"$ref": "#"}},  # nested where it never applies
    {"anyOf": [{}, {"uniqueItems": True}]},
    {"not": {"if": {}}},
    {"additionalProperties": {"$ref": "#"}},
    {"$schema": "http://json-schema.org/draft-07/schema#"},  # another dialect...
    {"not": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}},
    # keyword values the meta-schema refuses
    {"type": "float"},
    {"type": []},
    {"type": ["string", "string"]},
    {"minLength": -1},
    {"minLength": True},
    {"minLength": 1.5},
    {"minItems": None},
    {"minimum": "1"},
    {"minimum": None},
    {"maximum": True},
    {"pattern": "("},
    {"pattern": 1},
    {"required": "a"},
    {"required": ["a", "a"]},
    {"properties": []},
    {"enum": "abc"},
    {"anyOf": []},
    {"allOf": {}},
    {"items": [{}]},
    # not a schema
    None,
    [],
    1,
    "string",
]


@pytest.mark.parametrize("schema", UNSUPPORTED)
def test_unsupported_schemas_give_none(schema: Any) -> None:
    assert compile_check(schema) is None


def test_another_dialect_does_change_the_answer() -> None:
    """Why a subschema's ``$schema`` is refused: jsonschema switches to that draft."""
    nested = {"not": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}}
    assert Draft202012Validator(nested).is_valid(1.0)  # draft 4: 1.0 is not an integer


PYTHON_VALUES = [Decimal("1.5"), Decimal("NaN"), Fraction(1, 3), 1j, (1, 2), b"ab", object()]


@pytest.mark.parametrize("instance", PYTHON_VALUES)
@pytest.mark.parametrize(
    "schema",
    [{"type": "number"}, {"minimum": 1}, {"not": {"minimum": 1}}, {"type": "integer"},
     {"enum": [1.5, [1, 2]]}, {"not": {"type": "array"}}, {"items": {"minimum": 0}}],
)  # fmt: skip
def test_other_python_values_never_give_a_wrong_true(schema: Any, instance: Any) -> None:
    """Not JSON, so no exactness promised; but a True must still be right, and where
    jsonschema raises (complex < 1) the fast check says False: ask jsonschema."""
    check = compile_check(schema)
    assert check is not None
    for document in (instance, [instance], {"a": instance}):
        try:
            valid = Draft202012Validator(schema).is_valid(document)
        except Exception:  # Decimal("NaN") < 1, 1j < 1
            valid = False
        assert not check(document) or valid


# --- SchemaValidator: the same violations as schema_violations ------------------------

DEFINITIONS = load_dir(BUILTIN_DIR)
SCHEMAS = [s for d in DEFINITIONS for s in (d.input_schema, d.output_schema)]
FALLBACKS: list[Any] = [
    {"properties": {"a": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "integer"}}},
    {"type": "array", "uniqueItems": True, "items": {"multipleOf": 2}},
    {"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": False},
]  # fmt: skip


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.id)
def test_builtin_schemas_take_the_fast_path(definition: Any) -> None:
    assert SchemaValidator(definition.input_schema).fast
    assert SchemaValidator(definition.output_schema).fast


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_violations_equal_schema_violations(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from(SCHEMAS + FALLBACKS))
    validator = SchemaValidator(schema)
    assert validator.fast == (schema not in FALLBACKS)
    rng = data.draw(st.randoms(use_true_random=False))
    good, pool = sample(data.draw, schema), constants(schema)
    for document in [good, mutate(rng, good, pool), mutate(rng, mutate(rng, good, pool), pool)]:
        expected = schema_violations(Draft202012Validator(schema), document)
        assert validator.violations(document) == expected
        assert validator.is_valid(document) is (expected == [])


def test_violations_of_the_spec_example() -> None:
    from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

    (order,) = [d for d in DEFINITIONS if d.id == "calculate-order-total"]
    inputs, outputs = SchemaValidator(order.input_schema), SchemaValidator(order.output_schema)
    assert inputs.violations(EXAMPLE_INPUT) == []
    assert outputs.violations(EXAMPLE_OUTPUT) == []
    bad = {"orderId": 1, "items": [{"id": "x", "quantity": True, "price": -1}]}
    assert [v.path for v in inputs.violations(bad)] == [
        "$.items[0].price", "$.items[0].quantity", "$.orderId",
    ]  # fmt: skip
    assert inputs.violations(bad) == schema_violations(inputs.validator, bad)
