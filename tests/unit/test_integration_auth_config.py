"""``executionConfig.auth`` checked when a definition is loaded (domain/integration_auth.py,
domain/definition.py): the two kinds are accepted; anything else, and above all a secret
written into the definition, is refused with a message naming the definition and the
field. The config travels with the task to its work items (domain/task_rules.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.definition import TaskDefinition
from domain.errors import InvalidValue
from domain.integration_auth import ClientCredentials, EnvHeaders, parse_auth
from domain.task_rules import from_definition

DOCS = Path(__file__).resolve().parents[2] / "docs" / "definitions.md"
OAUTH2 = {
    "type": "oauth2-client-credentials",
    "tokenUrl": "https://auth.example.com/oauth/token",
    "clientId": "taskexec",
    "clientSecretEnv": "PAYMENTS_CLIENT_SECRET",
    "scope": "payments:write",
}
HEADERS = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAYMENTS_API_KEY"}}}


def integration(auth: Any, task_type: str = "INTEGRATION") -> dict[str, Any]:
    config: dict[str, Any] = {"endpoint": "https://pay.example.com/charges", "auth": auth}
    if task_type == "AUTOMATED":
        config["handler"] = "pay.tasks:charge"
    return {
        "id": "charge",
        "name": "Charge",
        "type": task_type,
        "version": "1",
        "executionConfig": config,
    }


def test_oauth2_client_credentials_are_read_with_an_optional_scope() -> None:
    assert parse_auth(OAUTH2) == ClientCredentials(
        token_url="https://auth.example.com/oauth/token",
        client_id="taskexec",
        client_secret_env="PAYMENTS_CLIENT_SECRET",
        scope="payments:write",
    )
    without_scope = {k: v for k, v in OAUTH2.items() if k != "scope"}
    assert parse_auth(without_scope) == ClientCredentials(
        "https://auth.example.com/oauth/token", "taskexec", "PAYMENTS_CLIENT_SECRET"
    )


def test_static_headers_name_their_variables_in_order() -> None:
    two = {
        "type": "headers",
        "headers": {"X-Api-Key": {"fromEnv": "KEY"}, "Authorization": {"fromEnv": "BASIC"}},
    }
    assert parse_auth(two) == EnvHeaders((("X-Api-Key", "KEY"), ("Authorization", "BASIC")))


@pytest.mark.parametrize("auth", [OAUTH2, HEADERS])
def test_an_integration_definition_with_auth_loads_and_keeps_it(auth: dict[str, Any]) -> None:
    definition = TaskDefinition.from_document(integration(auth))
    assert definition.execution_config["auth"] == auth
    assert definition.to_document()["executionConfig"]["auth"] == auth
    assert from_definition(definition, None, None)["execution"]["auth"] == auth


def test_an_automated_definitions_auth_is_not_checked_and_never_reaches_its_work() -> None:
    definition = TaskDefinition.from_document(integration({"type": "nonsense"}, "AUTOMATED"))
    assert "auth" not in from_definition(definition, None, None)["execution"]


def field(auth: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``auth`` with ``changes`` (a None value drops the field)."""
    changed = {**auth, **changes}
    return {k: v for k, v in changed.items() if v is not None}


@pytest.mark.parametrize(
    ("auth", "named"),
    [
        ("PAYMENTS_API_KEY", "executionConfig.auth must be an object"),
        ({"type": "basic"}, "executionConfig.auth.type"),
        ({}, "executionConfig.auth.type"),
        (field(OAUTH2, tokenUrl=None), "executionConfig.auth.tokenUrl"),
        (field(OAUTH2, tokenUrl="ftp://auth.example.com/token"), "executionConfig.auth.tokenUrl"),
        (field(OAUTH2, tokenUrl="auth.example.com/token"), "executionConfig.auth.tokenUrl"),
        (field(OAUTH2, tokenUrl="https:///token"), "executionConfig.auth.tokenUrl"),
        (field(OAUTH2, tokenUrl="https://[::1/token"), "executionConfig.auth.tokenUrl"),
        (field(OAUTH2, tokenUrl="https://id:pw@auth.example.com/"), "tokenUrl must not carry"),
        (field(OAUTH2, clientId=None), "executionConfig.auth.clientId"),
        (field(OAUTH2, clientId=" "), "executionConfig.auth.clientId"),
        (field(OAUTH2, clientSecretEnv=None), "executionConfig.auth.clientSecretEnv"),
        (field(OAUTH2, clientSecretEnv="1SECRET"), "executionConfig.auth.clientSecretEnv"),
        (field(OAUTH2, clientSecretEnv="$SECRET"), "executionConfig.auth.clientSecretEnv"),
        (field(OAUTH2, scope=""), "executionConfig.auth.scope"),
        (field(OAUTH2, scope=["a", "b"]), "executionConfig.auth.scope"),
        (field(OAUTH2, audience="x"), "executionConfig.auth.audience is not a field"),
        (field(OAUTH2, clientSecret="s3cr3t"), "executionConfig.auth.clientSecret: never a secret"),
        ({"type": "headers"}, "executionConfig.auth.headers"),
        ({"type": "headers", "headers": {}}, "executionConfig.auth.headers"),
        (
            {"type": "headers", "headers": {"X-Api-Key": "s3cr3t"}},
            'executionConfig.auth.headers.X-Api-Key must be {"fromEnv"',
        ),
        (
            {"type": "headers", "headers": {"X-Api-Key": {"value": "s3cr3t"}}},
            'executionConfig.auth.headers.X-Api-Key must be {"fromEnv"',
        ),
        (
            {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "A", "value": "s"}}},
            'executionConfig.auth.headers.X-Api-Key must be {"fromEnv"',
        ),
        (
            {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "NOT A NAME"}}},
            "executionConfig.auth.headers.X-Api-Key.fromEnv",
        ),
        (
            {"type": "headers", "headers": {"Bad Name": {"fromEnv": "A"}}},
            "executionConfig.auth.headers.Bad Name: not a valid header name",
        ),
        (
            {"type": "headers", "headers": {"Idempotency-Key": {"fromEnv": "A"}}},
            "executionConfig.auth.headers.Idempotency-Key: the worker sets this header",
        ),
        (
            {"type": "headers", "headers": {"X-Key": {"fromEnv": "A"}, "x-key": {"fromEnv": "B"}}},
            "executionConfig.auth.headers.x-key: the header is named twice",
        ),
        (field(HEADERS, token="s3cr3t"), "executionConfig.auth.token: never a secret"),
        (field(HEADERS, tokenUrl="https://a/"), "executionConfig.auth.tokenUrl is not a field"),
    ],
)
def test_a_bad_auth_is_refused_naming_the_definition_and_the_field(auth: Any, named: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        TaskDefinition.from_document(integration(auth))
    message = str(raised.value)
    assert message.startswith("charge: "), message
    assert named in message, message
    assert "s3cr3t" not in message  # the refused secret is not repeated


def test_the_examples_in_the_docs_are_valid_definitions() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    loaded = [TaskDefinition.from_document(yaml.safe_load(block)) for block in blocks]
    kinds = {d.execution_config.get("auth", {}).get("type") for d in loaded}
    assert kinds == {None, "oauth2-client-credentials", "headers"}
