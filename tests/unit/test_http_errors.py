"""The error envelope's mapping of a RecursionError: the client's (a body nested deeper
than the decoder goes) is a 400; any other is a bug of ours, a 500."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from api.http.errors import too_deep


def answer(exc: RecursionError) -> tuple[int | None, dict[str, Any]]:
    request: Any = SimpleNamespace(method="POST", url=SimpleNamespace(path="/api/v1/tasks"))
    response = too_deep(request, exc)
    return response.status_code, json.loads(json.dumps(response.content))


def test_a_body_too_deep_to_decode_is_the_clients_400() -> None:
    status, body = answer(RecursionError("maximum recursion depth exceeded while deserializing"))
    assert status == 400
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert "nests too deeply" in body["error"]["message"]


def test_any_other_recursion_is_ours_a_500() -> None:
    status, body = answer(RecursionError("maximum recursion depth exceeded"))
    assert status == 500
    assert body["error"] == {
        "code": "INTERNAL_ERROR",
        "message": "Internal server error",
        "details": None,
    }
