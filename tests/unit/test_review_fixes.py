"""Regressions from the security review: path normalisation of rate-limit buckets, scope
parsing, and what "the same body" means for idempotency."""

from __future__ import annotations

import pytest

from api.security.gate import bucket_of, is_open
from commands.idempotency import fingerprint
from commands.messages import SubmitTask
from domain.values import ANONYMOUS


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tasks/bulk", "//api/v1/tasks/bulk", "/api/v1//tasks/bulk", "/api/v1/tasks//bulk/"],
)
def test_every_spelling_of_the_bulk_path_counts_as_bulk(path: str) -> None:
    assert bucket_of("POST", path) == "bulk"


def test_other_requests_count_as_default() -> None:
    assert bucket_of("GET", "/api/v1/tasks/bulk") == "default"
    assert bucket_of("POST", "/api/v1/tasks") == "default"


def test_open_paths_are_matched_as_the_router_does() -> None:
    assert is_open("/health/")
    assert is_open("//schema/openapi.json")
    assert not is_open("/api/v1/tasks")


def test_whole_floats_and_integers_are_the_same_body() -> None:
    def command(payload: dict[str, object]) -> SubmitTask:
        return SubmitTask(definition_id="d", input=payload, actor=ANONYMOUS)

    assert fingerprint(command({"q": 2, "items": [{"p": 10}]})) == fingerprint(
        command({"q": 2.0, "items": [{"p": 10.0}]})
    )
    assert fingerprint(command({"q": 2})) != fingerprint(command({"q": 2.5}))


def test_scopes_are_separated_by_spaces_only() -> None:
    from api.security.tokens import _permissions

    found = _permissions({"scope": "tasks:read\u00a0tasks:execute tasks:list"})
    assert "tasks:list" in found
    assert "tasks:execute" not in found
