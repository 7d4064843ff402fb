"""Two tenants and a global principal on the real app (tests/integration/test_tenants*.py):
``acme`` by an API key made with a tenant, ``globex`` by JWTs carrying the tenant claim,
``everyone`` by an API key without a tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey
from litestar.testing import TestClient

from api.runtime import Runtime
from api.settings import Settings
from domain.permissions import ALL_PERMISSIONS
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import (
    AUDIENCE,
    ISSUER,
    OPERATOR,
    SECRET,
    TASKS,
    api_client,
    assert_envelope,
    claims,
)

CLAIM = "https://example.test/tenant"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
ORDER = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
REFUND = {"taskDefinitionId": "approve-refund", "input": {"orderId": "A-1", "amount": 30}}
Headers = dict[str, str]


def token(sub: str, tenant: Any = None) -> Headers:
    """A bearer JWT of every permission for ``sub``, with the tenant claim (None: none)."""
    payload = claims(sub=sub, **{CLAIM: tenant})
    signed = jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()))
    return {"Authorization": f"Bearer {signed}"}


def api_key(runtime: Runtime, tenant: str | None) -> Headers:
    key, _ = runtime.apikeys.create(
        name=f"key of {tenant}", permissions=sorted(ALL_PERMISSIONS), actor=OPERATOR, tenant=tenant
    )
    return {"X-API-Key": key}


@dataclass
class Tenants:
    client: TestClient[Any]
    runtime: Runtime
    acme: Headers  # an API key of tenant acme
    globex: Headers  # a JWT of tenant globex
    everyone: Headers  # an API key without a tenant

    def submit(self, who: Headers, body: dict[str, Any], **headers: str) -> str:
        response = self.client.post(TASKS, json=body, headers={**who, **headers})
        assert response.status_code in (200, 201), response.text
        task_id: str = response.json()["id"]
        return task_id

    def listed(self, who: Headers, **query: Any) -> tuple[list[str], int]:
        """The ids of every page of a list (``limit`` per page), and its totalItems."""
        ids: list[str] = []
        page, total = 1, 0
        while True:
            response = self.client.get(TASKS, params={**query, "page": page}, headers=who)
            assert response.status_code == 200, response.text
            body = response.json()
            total = body["pagination"]["totalItems"]
            if not body["items"]:
                return ids, total
            ids += [item["id"] for item in body["items"]]
            page += 1

    def hidden(self, who: Headers, method: str, path: str, task_id: str, body: Any = None) -> None:
        """``task_id`` is not found for ``who``: the same 404 as an unknown id, in the
        spec's envelope, only the id in the message differing."""
        hidden = self.client.request(method, path.format(task_id), json=body, headers=who)
        unknown = self.client.request(method, path.format(UNKNOWN), json=body, headers=who)
        seen = assert_envelope(hidden, 404, "NOT_FOUND")
        expected = assert_envelope(unknown, 404, "NOT_FOUND")
        assert seen["message"].replace(task_id, UNKNOWN) == expected["message"]
        assert seen["details"] == expected["details"] == {"field": "taskId"}


@contextmanager
def tenants(database_url: str, tmp_path: Path) -> Iterator[Tenants]:
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path,
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_tenant_claim=CLAIM,
        rate_limit="off",
        rate_limit_bulk="off",
    )
    with api_client(settings) as (client, runtime):
        yield Tenants(
            client,
            runtime,
            acme=api_key(runtime, "acme"),
            globex=token("bob", "globex"),
            everyone=api_key(runtime, None),
        )
