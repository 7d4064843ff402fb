"""The served OpenAPI document, completed to say exactly what the server does.

Litestar generates the paths from the route handlers; what it cannot know is added here,
once, when the document is first served:

- the bodies' schemas come from msgspec, the decoder that validates them, so constraints
  and ``additionalProperties: false`` match validation exactly (Litestar's generator drops
  a ``ge=0`` or ``gt=0``, and does not see ``forbid_unknown_fields``);
- every error response is the error envelope, with an example of its own code;
- the headers: ``X-Request-ID`` on every response (api/http/access_log.py); the
  rate-limit ones on every response of a counted path (all but the
  probes ``/health``, ``/health/live``, ``/health/ready``, api/security/gate.py),
  ``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401, ``Location`` and
  ``Idempotent-Replayed`` on a submit;
- 503 (the database or the credential store unreachable) and 413 (a body over the size
  limit) wherever they can happen; no 400 where nothing can be invalid;
- the permission each operation needs (``x-permission`` and its description);
- no JSON null for a header or query parameter (Litestar adds one for ``X | None``);
- the words and the examples (api/http/openapi_texts.py).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from types import ModuleType
from typing import Any

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import OpenAPIRenderPlugin

from api.http import history, schemas, submission
from api.http.openapi_texts import (
    ENUM_DESCRIPTIONS,
    ERROR_DESCRIPTIONS,
    ERROR_EXAMPLES,
    HEADERS,
    RATE_LIMIT_HEADERS,
    REQUEST_EXAMPLES,
    RESPONSE_EXAMPLES,
)
from api.security.gate import HEALTH_PATHS

Operation = tuple[str, str]  # (path template as in the document, lower-case method)

REF = "#/components/schemas/{name}"
ERROR_REF = {"$ref": REF.format(name="ErrorEnvelope")}
Finish = Callable[[dict[str, Any]], dict[str, Any]]


class Completed(OpenAPIRenderPlugin):
    """Serves ``inner``'s page (a docs page, the JSON, the YAML) from the completed
    document instead of Litestar's own."""

    def __init__(self, inner: OpenAPIRenderPlugin, finish: Finish) -> None:
        super().__init__(
            path=inner.paths, media_type=inner.media_type, favicon=inner.favicon, style=inner.style
        )
        self._inner = inner
        self._finish = finish

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self._inner.render(request, self._finish(openapi_schema))

    def receive_router(self, router: Any) -> None:
        self._inner.receive_router(router)


def completer(handlers: Iterable[HTTPRouteHandler]) -> Finish:
    """``complete`` for the app of ``handlers``, run once: Litestar's document is built
    once too, so the completed one is kept beside it."""
    handlers = list(handlers)
    types = body_types(schemas, submission, history)
    permissions = permissions_of(handlers)
    optional = optional_bodies(handlers)
    done: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def finish(document: dict[str, Any]) -> dict[str, Any]:
        if not done or done[0][0] is not document:
            done[:] = [(document, complete(document, types, permissions, optional))]
        return done[0][1]

    return finish


def body_types(*modules: ModuleType) -> list[type]:
    """Every msgspec Struct the API's modules define: the bodies of requests and answers."""
    return [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
    ]


def operation_id(handler: HTTPRouteHandler, *_: Any) -> str:
    """Litestar's ``operation_id_creator``: the handler's name in camelCase (``getTask``),
    so that generated clients get short, stable method names."""
    first, *rest = handler.handler_name.split("_")
    return first + "".join(word.title() for word in rest)


def permissions_of(handlers: Iterable[HTTPRouteHandler]) -> dict[Operation, str]:
    """The permission each documented operation needs (``opt["permission"]``)."""
    found: dict[Operation, str] = {}
    for handler in handlers:
        permission = handler.opt.get("permission")
        for path in handler.paths:
            for method in handler.http_methods:
                if permission is not None:
                    found[(template(path), method.lower())] = permission
    return found


def optional_bodies(handlers: Iterable[HTTPRouteHandler]) -> set[Operation]:
    """Operations whose body may be left out (the handler's ``data`` defaults to None)."""
    found: set[Operation] = set()
    for handler in handlers:
        data = inspect.signature(handler.fn).parameters.get("data")
        if data is not None and data.default is None:
            found |= {
                (template(path), method.lower())
                for path in handler.paths
                for method in handler.http_methods
            }
    return found


def template(path: str) -> str:
    """A route path as the document writes it: ``/tasks/{taskId:str}`` → ``/tasks/{taskId}``."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", path)


def complete(
    document: Mapping[str, Any],
    types: Iterable[type],
    permissions: Mapping[Operation, str],
    optional: set[Operation],
) -> dict[str, Any]:
    """A completed copy of Litestar's ``document``; ``types`` are the bodies' Structs."""
    doc = copy.deepcopy(dict(document))
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(body_schemas(types))
    components["headers"] = HEADERS
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            _complete_operation(path, method, operation, permissions, optional)
    return doc


# A submit gives ``scheduledAt`` or ``delaySeconds``, not both (domain/schedule.py): what
# a Struct cannot declare. Either may be null (not given).
ONE_SCHEDULE = {
    "not": {
        "required": ["scheduledAt", "delaySeconds"],
        "properties": {"scheduledAt": {"type": "string"}, "delaySeconds": {"type": "integer"}},
    }
}


def body_schemas(types: Iterable[type]) -> dict[str, Any]:
    """msgspec's JSON Schemas of ``types`` and all they reference, enums in declared order."""
    _, schemas = msgspec.json.schema_components(list(types), ref_template=REF)
    for schema in schemas.values():
        schema.pop("examples", None)
        if {"scheduledAt", "delaySeconds"} <= set(schema.get("properties", {})):
            schema.update(ONE_SCHEDULE)
    for enum, description in ENUM_DESCRIPTIONS.items():
        schemas[enum.__name__] = _enum_schema(enum, description)
    return schemas


def _enum_schema(enum: type[Enum], description: str) -> dict[str, Any]:
    return {
        "title": enum.__name__,
        "description": description,
        "type": "string",
        "enum": [member.value for member in enum],
    }


def _complete_operation(
    path: str,
    method: str,
    operation: dict[str, Any],
    permissions: Mapping[Operation, str],
    optional: set[Operation],
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    counted = path not in HEALTH_PATHS
    if counted:
        _declare(responses, "503")
        if "requestBody" in operation:
            _declare(responses, "413")
    if not _can_be_invalid(operation):
        responses.pop("400", None)
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _not_null(parameter["schema"])
    permission = permissions.get((path, method))
    if permission is not None:
        operation["x-permission"] = permission
        operation["description"] = f"Requires the permission `{permission}`."
    if (path, method) in optional and "requestBody" in operation:
        operation["requestBody"]["required"] = False
    if (example := REQUEST_EXAMPLES.get((path, method))) is not None:
        operation["requestBody"]["content"]["application/json"]["example"] = example
    for status, response in responses.items():
        _complete_response(path, method, status, response, counted)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without Litestar's ``null`` branch (for ``X | None = None``):
    a header or query value is a string or absent, never JSON null."""
    for key in ("oneOf", "anyOf"):
        branches = [branch for branch in schema.get(key, []) if branch != {"type": "null"}]
        if key in schema and len(branches) < len(schema[key]):
            rest = {name: value for name, value in schema.items() if name != key}
            return {**branches[0], **rest} if len(branches) == 1 else {**rest, key: branches}
    return schema


def _declare(responses: dict[str, Any], status: str) -> None:
    responses.setdefault(status, {"description": ERROR_DESCRIPTIONS[status]})


def _can_be_invalid(operation: dict[str, Any]) -> bool:
    """Whether a request to it can fail validation: a body, a header or query parameter,
    or a path parameter with constraints. (An unconstrained path string cannot.)"""
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path" or set(parameter.get("schema", {})) - {"type"}:
            return True
    return False


def _complete_response(
    path: str, method: str, status: str, response: dict[str, Any], counted: bool
) -> None:
    headers: dict[str, Any] = {"X-Request-ID": _header_ref("X-Request-ID")}  # on every one
    if counted:
        headers.update({name: _header_ref(name) for name in RATE_LIMIT_HEADERS})
    if counted and status in ("429", "503"):
        headers["Retry-After"] = _header_ref("Retry-After")
    if status == "401":
        headers["WWW-Authenticate"] = _header_ref("WWW-Authenticate")
    if (path, method) == ("/api/v1/tasks", "post") and status in ("200", "201"):
        headers["Location"] = _header_ref("Location")
        if status == "200":
            headers["Idempotent-Replayed"] = _header_ref("Idempotent-Replayed")
    if headers:
        response["headers"] = headers
    elif "headers" in response and not response["headers"]:
        del response["headers"]
    if int(status) >= 400 and not (path in HEALTH_PATHS and status == "503"):
        response["description"] = ERROR_DESCRIPTIONS.get(status, response.get("description"))
        media: dict[str, Any] = {"schema": ERROR_REF}
        if status in ERROR_EXAMPLES:
            media["example"] = ERROR_EXAMPLES[status]
        response["content"] = {"application/json": media}
    elif (example := RESPONSE_EXAMPLES.get((path, method, status))) is not None:
        response["content"]["application/json"]["example"] = example


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}
