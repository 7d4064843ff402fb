"""Unit tests of task definitions: documents, the catalog, input validation, handler lookup."""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

from commands.catalog import (
    BUILTIN_DIR,
    DefinitionCatalog,
    DefinitionFileError,
    Violation,
    load_file,
)
from domain.definition import DEFAULT_TIMEOUT_MS, TaskDefinition
from domain.errors import InvalidValue
from domain.values import RetryPolicy, TaskType
from workers.handlers import HandlerNotFound, HandlerRegistry, TaskContext
from workers.handlers.orders import calculate_order_total

SPEC_INPUT = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}

BASE_DOC: dict[str, Any] = {
    "id": "my-task",
    "name": "My Task",
    "description": "does things",
    "type": "AUTOMATED",
    "version": "1.0.0",
    "inputSchema": {"type": "object"},
    "outputSchema": {"type": "object"},
    "timeout": 1_000,
    "retryPolicy": {"maxRetries": 1, "retryInterval": 10, "backoffMultiplier": 1.5},
    "executionConfig": {"handler": "pkg.mod:func"},
}


def doc_with(**changes: Any) -> dict[str, Any]:
    """BASE_DOC with keys replaced; a value of ... removes the key."""
    doc = copy.deepcopy(BASE_DOC)
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


# -- TaskDefinition.from_document -----------------------------------------------------------


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.iterdir()), ids=lambda p: p.name)
def test_builtin_files_are_valid_documents(path: Path):
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    definition = TaskDefinition.from_document(doc)
    assert definition.id == doc["id"]
    assert definition.version == doc["version"]
    assert load_file(path) == definition


def test_a_full_document_maps_every_field():
    definition = TaskDefinition.from_document(doc_with())
    assert definition == TaskDefinition(
        id="my-task",
        name="My Task",
        description="does things",
        type=TaskType.AUTOMATED,
        version="1.0.0",
        input_schema={"type": "object"},
        output_schema={"type": "object"},
        timeout_ms=1_000,
        retry_policy=RetryPolicy(max_retries=1, retry_interval_ms=10, backoff_multiplier=1.5),
        execution_config={"handler": "pkg.mod:func"},
    )
    assert definition.handler == "pkg.mod:func"
    assert definition.endpoint is None


def test_optional_fields_take_defaults():
    doc = {"id": "m", "name": "Manual", "type": "MANUAL", "version": "1"}
    definition = TaskDefinition.from_document(doc)
    assert definition.description == ""
    assert definition.input_schema == {}
    assert definition.output_schema == {}
    assert definition.timeout_ms == DEFAULT_TIMEOUT_MS
    assert definition.retry_policy == RetryPolicy()
    assert definition.execution_config == {}
    assert definition.handler is None


def test_integration_definition_with_endpoint():
    definition = TaskDefinition.from_document(
        doc_with(type="INTEGRATION", executionConfig={"endpoint": "http://x/y"})
    )
    assert definition.type is TaskType.INTEGRATION
    assert definition.endpoint == "http://x/y"


INVALID_DOCS = [
    ("missing-id", doc_with(id=...), "id must be a non-empty string"),
    ("blank-id", doc_with(id="  "), "id must be a non-empty string"),
    ("bad-id", doc_with(id="has space"), "must match"),
    ("id-leading-dash", doc_with(id="-x"), "must match"),
    ("missing-name", doc_with(name=...), "name must be a non-empty string"),
    ("missing-type", doc_with(type=...), "type must be a non-empty string"),
    ("bad-type", doc_with(type="ROBOT"), "type must be one of AUTOMATED, MANUAL, INTEGRATION"),
    ("lowercase-type", doc_with(type="automated"), "type must be one of"),
    ("missing-version", doc_with(version=...), "version must be a non-empty string"),
    ("numeric-version", doc_with(version=1.2), "version must be a non-empty string"),
    ("automated-no-config", doc_with(executionConfig=...), "executionConfig.handler"),
    ("automated-no-handler", doc_with(executionConfig={"executor": "x"}), "handler"),
    ("handler-no-colon", doc_with(executionConfig={"handler": "pkg.mod.func"}), "handler"),
    ("handler-no-module", doc_with(executionConfig={"handler": ":func"}), "handler"),
    ("handler-no-function", doc_with(executionConfig={"handler": "pkg.mod:"}), "handler"),
    ("handler-dash", doc_with(executionConfig={"handler": "pkg.mod:my-func"}), "handler"),
    ("handler-digit", doc_with(executionConfig={"handler": "1pkg:func"}), "handler"),
    ("handler-two-colons", doc_with(executionConfig={"handler": "a:b:c"}), "handler"),
    ("handler-not-str", doc_with(executionConfig={"handler": 42}), "handler"),
    (
        "integration-no-endpoint",
        doc_with(type="INTEGRATION", executionConfig={"handler": "a:b"}),
        "INTEGRATION definitions need executionConfig.endpoint",
    ),
    (
        "integration-empty-endpoint",
        doc_with(type="INTEGRATION", executionConfig={"endpoint": ""}),
        "executionConfig.endpoint",
    ),
    (
        "negative-max-retries",
        doc_with(retryPolicy={"maxRetries": -1}),
        "retryPolicy.maxRetries must be a non-negative integer",
    ),
    (
        "negative-retry-interval",
        doc_with(retryPolicy={"retryInterval": -5}),
        "retryPolicy.retryInterval must be a non-negative integer",
    ),
    ("string-max-retries", doc_with(retryPolicy={"maxRetries": "3"}), "maxRetries"),
    ("bool-max-retries", doc_with(retryPolicy={"maxRetries": True}), "maxRetries"),
    ("float-retry-interval", doc_with(retryPolicy={"retryInterval": 1.5}), "retryInterval"),
    (
        "string-multiplier",
        doc_with(retryPolicy={"backoffMultiplier": "2"}),
        "backoffMultiplier must be a number",
    ),
    ("small-multiplier", doc_with(retryPolicy={"backoffMultiplier": 0.5}), "backoffMultiplier"),
    ("retry-policy-not-object", doc_with(retryPolicy="often"), "retryPolicy must be an object"),
    ("zero-timeout", doc_with(timeout=0), "timeout must be a positive integer"),
    ("negative-timeout", doc_with(timeout=-1), "timeout must be a positive integer"),
    ("float-timeout", doc_with(timeout=1.5), "timeout must be a positive integer"),
    ("bool-timeout", doc_with(timeout=True), "timeout must be a positive integer"),
    ("string-timeout", doc_with(timeout="60"), "timeout must be a positive integer"),
    ("input-schema-list", doc_with(inputSchema=["x"]), "inputSchema must be an object"),
    ("output-schema-str", doc_with(outputSchema="x"), "outputSchema must be an object"),
    ("config-str", doc_with(executionConfig="x"), "executionConfig must be an object"),
    ("config-list", doc_with(executionConfig=[]), "executionConfig must be an object"),
    ("retry-list", doc_with(retryPolicy=[]), "retryPolicy must be an object"),
    ("input-schema-false", doc_with(inputSchema=False), "inputSchema must be an object"),
    ("id-trailing-newline", doc_with(id="x\n"), "must match"),
    ("description-number", doc_with(description=3), "description must be a string"),
    (
        "handler-trailing-newline",
        doc_with(executionConfig={"handler": "m:f\n"}),
        "package.module:function",
    ),
    ("nan-multiplier", doc_with(retryPolicy={"backoffMultiplier": float("nan")}), ">= 1"),
    ("inf-multiplier", doc_with(retryPolicy={"backoffMultiplier": float("inf")}), ">= 1"),
]


@pytest.mark.parametrize(
    ("doc", "fragment"), [c[1:] for c in INVALID_DOCS], ids=[c[0] for c in INVALID_DOCS]
)
def test_invalid_documents_raise_invalid_value_with_a_useful_message(
    doc: dict[str, Any], fragment: str
):
    with pytest.raises(InvalidValue) as info:
        TaskDefinition.from_document(doc)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "doc",
    [
        doc_with(name=...),
        doc_with(type="ROBOT"),
        doc_with(executionConfig={}),
        doc_with(timeout=0),
        doc_with(retryPolicy={"maxRetries": -1}),
    ],
    ids=["name", "type", "handler", "timeout", "retry"],
)
def test_messages_name_the_definition(doc: dict[str, Any]):
    with pytest.raises(InvalidValue, match="my-task"):
        TaskDefinition.from_document(doc)


@pytest.mark.parametrize("doc", [None, [], "text", 3])
def test_a_document_that_is_not_an_object_is_refused(doc: Any):
    with pytest.raises(InvalidValue, match="must be an object"):
        TaskDefinition.from_document(doc)


@pytest.mark.parametrize(
    "handler", ["a:b", "pkg.sub.mod:func_1", "_private:_f", "workers.handlers.orders:calculate"]
)
def test_well_formed_handler_references_are_accepted(handler: str):
    definition = TaskDefinition.from_document(doc_with(executionConfig={"handler": handler}))
    assert definition.handler == handler


def test_manual_definitions_need_no_binding():
    definition = TaskDefinition.from_document(doc_with(type="MANUAL", executionConfig=...))
    assert definition.type is TaskType.MANUAL
    assert definition.handler is None
    assert definition.endpoint is None


# -- DefinitionCatalog.load -----------------------------------------------------------------


def write_json(directory: Path, name: str, doc: dict[str, Any]) -> Path:
    path = directory / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_builtins_are_loaded():
    catalog = DefinitionCatalog.load()
    ids = [d.id for d in catalog.all()]
    assert ids == sorted(ids)
    assert {"calculate-order-total", "process-payment"} <= set(ids)

    calc = catalog.get("calculate-order-total")
    assert calc is not None
    assert calc.type is TaskType.AUTOMATED
    assert calc.version == "1.2.0"
    assert calc.handler == "workers.handlers.orders:calculate_order_total"
    assert calc.timeout_ms == 60_000
    assert calc.retry_policy == RetryPolicy(3, 60_000, 2.0)

    payment = catalog.get("process-payment")
    assert payment is not None
    assert payment.type is TaskType.INTEGRATION
    assert payment.version == "1.0.5"
    assert payment.endpoint
    assert payment.timeout_ms == 30_000

    assert catalog.get("no-such-definition") is None


def test_extra_dir_adds_json_and_yaml_definitions(tmp_path: Path):
    write_json(tmp_path, "a.json", doc_with(id="json-task"))
    (tmp_path / "b.yaml").write_text(
        textwrap.dedent(
            """\
            id: yaml-task
            name: YAML Task
            type: MANUAL
            version: "3.1"
            inputSchema:
              type: object
              required: [who]
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "c.yml").write_text(
        yaml.safe_dump(
            doc_with(id="yml-task", type="INTEGRATION", executionConfig={"endpoint": "e"})
        ),
        encoding="utf-8",
    )
    (tmp_path / "README.txt").write_text("not a definition", encoding="utf-8")

    catalog = DefinitionCatalog.load(tmp_path)
    ids = {d.id for d in catalog.all()}
    assert ids == {
        "approve-refund",
        "calculate-order-total",
        "process-payment",
        "json-task",
        "yaml-task",
        "yml-task",
    }
    yaml_task = catalog.get("yaml-task")
    assert yaml_task is not None
    assert yaml_task.type is TaskType.MANUAL
    assert yaml_task.version == "3.1"
    assert catalog.input_violations("yaml-task", {"who": "me"}) == []
    assert [v.path for v in catalog.input_violations("yaml-task", {})] == ["$"]


def test_extra_dir_replaces_a_builtin_with_the_same_id(tmp_path: Path):
    write_json(
        tmp_path,
        "override.json",
        doc_with(
            id="calculate-order-total",
            version="9.9.9",
            inputSchema={"type": "object", "required": ["x"]},
        ),
    )
    catalog = DefinitionCatalog.load(tmp_path)
    calc = catalog.get("calculate-order-total")
    assert calc is not None
    assert calc.version == "9.9.9"
    assert calc.handler == "pkg.mod:func"
    # the replacement's validator is the one used
    assert catalog.input_violations("calculate-order-total", {"x": 1}) == []
    assert catalog.input_violations("calculate-order-total", SPEC_INPUT) != []
    assert catalog.get("process-payment") is not None
    assert len([d for d in catalog.all() if d.id == "calculate-order-total"]) == 1


def test_an_empty_extra_dir_gives_the_builtins(tmp_path: Path):
    assert [d.id for d in DefinitionCatalog.load(tmp_path).all()] == [
        d.id for d in DefinitionCatalog.load().all()
    ]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("broken.json", '{"id": "x", ', "cannot read"),
        ("broken.yaml", "id: [unclosed", "cannot read"),
        ("empty.yaml", "", "must be an object"),
        ("list.json", "[1, 2]", "must be an object"),
        (
            "bad-input-schema.json",
            json.dumps(doc_with(inputSchema={"type": "nope"})),
            "invalid JSON Schema",
        ),
        (
            "bad-output-schema.json",
            json.dumps(doc_with(outputSchema={"required": "x"})),
            "invalid JSON Schema",
        ),
        ("no-name.json", json.dumps(doc_with(name=...)), "name must be a non-empty string"),
        ("bad-timeout.json", json.dumps(doc_with(timeout=-1)), "timeout"),
    ],
)
def test_a_broken_file_raises_definition_file_error_naming_the_file(
    tmp_path: Path, name: str, content: str, fragment: str
):
    write_json(tmp_path, "good.json", doc_with(id="good"))
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DefinitionFileError) as info:
        DefinitionCatalog.load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / name) in message
    assert fragment in message


def test_a_missing_dir_raises_definition_file_error(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(DefinitionFileError, match="does not exist") as info:
        DefinitionCatalog.load(missing)
    assert str(missing) in str(info.value)


def test_a_file_given_as_dir_raises_definition_file_error(tmp_path: Path):
    path = write_json(tmp_path, "a.json", doc_with())
    with pytest.raises(DefinitionFileError):
        DefinitionCatalog.load(path)


# -- input / output violations ----------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> DefinitionCatalog:
    return DefinitionCatalog.load()


def test_the_spec_example_input_is_valid(catalog: DefinitionCatalog):
    assert catalog.input_violations("calculate-order-total", SPEC_INPUT) == []


def test_the_handler_output_is_valid(catalog: DefinitionCatalog):
    output = calculate_order_total(SPEC_INPUT)
    assert catalog.output_violations("calculate-order-total", output) == []
    missing = catalog.output_violations("calculate-order-total", {"tax": 1})
    assert [(v.path, v.message) for v in missing] == [
        ("$", "'subtotal' is a required property"),
        ("$", "'total' is a required property"),
    ]


def test_a_bad_input_lists_every_violation_with_its_path(catalog: DefinitionCatalog):
    document = {"items": [{"id": "ITEM-1", "quantity": "2", "price": 1.0}]}
    violations = catalog.input_violations("calculate-order-total", document)
    assert all(isinstance(v, Violation) for v in violations)
    assert len(violations) >= 2
    by_path = {v.path: v.message for v in violations}
    assert "orderId" in by_path["$"]
    assert "required" in by_path["$"]
    assert "number" in by_path["$.items[0].quantity"]


def test_many_violations_are_all_reported_in_path_order(catalog: DefinitionCatalog):
    document = {
        "orderId": 7,
        "items": [
            {"id": "A", "quantity": "2", "price": -1},
            {"quantity": 1},
        ],
    }
    violations = catalog.input_violations("calculate-order-total", document)
    paths = [v.path for v in violations]
    assert paths == [
        "$.items[0].price",
        "$.items[0].quantity",
        "$.items[1]",
        "$.items[1]",
        "$.orderId",
    ]
    messages = [v.message for v in violations]
    assert "minimum" in messages[0]
    assert {messages[2], messages[3]} == {
        "'id' is a required property",
        "'price' is a required property",
    }
    assert "string" in messages[4]


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        ({"orderId": "x", "items": []}, ["$.items"]),
        ("not an object", ["$"]),
        ({"orderId": "x", "items": "nope"}, ["$.items"]),
    ],
)
def test_other_input_violations(catalog: DefinitionCatalog, document: Any, paths: list[str]):
    assert [v.path for v in catalog.input_violations("calculate-order-total", document)] == paths


def test_payment_input_violations(catalog: DefinitionCatalog):
    good = {"orderId": "o", "amount": 10.5, "currency": "EUR"}
    assert catalog.input_violations("process-payment", good) == []
    bad = {"orderId": "o", "amount": 0, "currency": "eur"}
    assert [v.path for v in catalog.input_violations("process-payment", bad)] == [
        "$.amount",
        "$.currency",
    ]


def test_unknown_definition_has_no_validator(catalog: DefinitionCatalog):
    with pytest.raises(KeyError):
        catalog.input_violations("no-such-definition", {})


# -- a user's own handler module ------------------------------------------------------------

USER_MODULE = """
import asyncio
import threading

from workers.handlers import inline

NOT_CALLABLE = 42


@inline
def quick(payload, context):
    return {"plus_one": payload["n"] + 1, "thread": threading.current_thread().name}


def handler(payload, context):
    return {
        "doubled": payload["n"] * 2,
        "task": context.task_id,
        "attempt": context.attempt,
        "thread": threading.current_thread().name,
    }


async def async_handler(payload, context):
    await asyncio.sleep(0)
    return {
        "tripled": payload["n"] * 3,
        "definition": context.definition_id,
        "thread": threading.current_thread().name,
    }


def exploding(payload, context):
    raise RuntimeError("handler failed: " + str(payload["n"]))


class Callable:
    async def __call__(self, payload, context):
        return {"called": payload["n"]}


callable_object = Callable()
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"user_handlers_{uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def context() -> TaskContext:
    return TaskContext(
        task_id="t-1", attempt=2, definition_id="user-def", worker="w", timeout_ms=1_000
    )


def test_resolve_finds_a_users_handler(user_module: str):
    registry = HandlerRegistry()
    handler = registry.resolve(f"{user_module}:handler")
    module = importlib.import_module(user_module)
    assert handler is module.handler
    assert registry.resolve(f"{user_module}:handler") is handler


def test_call_runs_a_sync_handler_off_the_event_loop_thread(user_module: str):
    registry = HandlerRegistry()
    output = asyncio.run(registry.call(f"{user_module}:handler", {"n": 21}, context()))
    assert output["doubled"] == 42
    assert output["task"] == "t-1"
    assert output["attempt"] == 2
    assert output["thread"] != "MainThread"


def test_call_runs_an_inline_handler_on_the_loop_itself(user_module: str):
    registry = HandlerRegistry()
    output = asyncio.run(registry.call(f"{user_module}:quick", {"n": 1}, context()))
    assert output == {"plus_one": 2, "thread": "MainThread"}


def test_the_builtin_order_total_runs_inline():
    handler = HandlerRegistry().resolve("workers.handlers.orders:calculate_order_total")
    assert getattr(handler, "__taskexec_inline__", False)


def test_call_awaits_an_async_handler_on_the_loop(user_module: str):
    registry = HandlerRegistry()
    output = asyncio.run(registry.call(f"{user_module}:async_handler", {"n": 5}, context()))
    assert output == {"tripled": 15, "definition": "user-def", "thread": "MainThread"}


def test_call_propagates_a_handler_exception(user_module: str):
    registry = HandlerRegistry()
    with pytest.raises(RuntimeError, match="handler failed: 3"):
        asyncio.run(registry.call(f"{user_module}:exploding", {"n": 3}, context()))


def test_the_builtin_handler_resolves():
    handler = HandlerRegistry().resolve("workers.handlers.orders:calculate_order_total")
    assert handler is calculate_order_total


@pytest.mark.parametrize(
    "reference",
    [
        "no_colon_here",
        ":handler",
        "{module}:",
        "",
        "module_that_does_not_exist_0xdeadbeef:handler",
        "{module}:missing",
        "{module}:NOT_CALLABLE",
        "{module}:handler:extra",
    ],
)
def test_bad_references_raise_handler_not_found(user_module: str, reference: str):
    registry = HandlerRegistry()
    with pytest.raises(HandlerNotFound):
        registry.resolve(reference.format(module=user_module))


def test_a_bad_reference_is_not_cached(user_module: str):
    registry = HandlerRegistry()
    with pytest.raises(HandlerNotFound):
        registry.resolve(f"{user_module}:later")
    module = importlib.import_module(user_module)
    module.later = lambda payload, context: "now"  # type: ignore[attr-defined]
    assert registry.resolve(f"{user_module}:later")({}, context()) == "now"


def test_a_description_of_null_is_empty():
    assert TaskDefinition.from_document(doc_with(description=None)).description == ""


def test_an_object_with_async_call_is_awaited(user_module: str):
    registry = HandlerRegistry()
    output = asyncio.run(registry.call(f"{user_module}:callable_object", {"n": 4}, context()))
    assert output == {"called": 4}


@pytest.mark.parametrize(
    ("source", "error"),
    [("def broken(:\n", "SyntaxError"), ("raise RuntimeError('boom at import')\n", "boom")],
)
def test_a_module_failing_to_import_is_handler_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, error: str
):
    name = f"broken_{uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerNotFound, match=error):
        HandlerRegistry().resolve(f"{name}:handler")
