"""Bearer JWTs over HTTP on the real app: every accepted algorithm, every rejected case.

Keys come from a JWKS file (RS256, ES256, EdDSA) and an HS256 secret. Verification touches
no database, so these run on a SQLite file only; the database-dependent paths (API keys,
actors in events) run on both in test_auth_api.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from joserfc import jws, jwt
from joserfc.jwk import OctKey, RSAKey
from litestar.testing import TestClient

from api.runtime import Runtime
from api.settings import Settings
from tests.security_support import (
    AUDIENCE,
    ISSUER,
    SECRET,
    TASKS,
    Keys,
    api_client,
    assert_unauthorized,
    b64,
    claims,
    unsigned,
)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def settings_for(tmp_path: Path, keys: Keys, **overrides: Any) -> Settings:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    fields: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'taskexec.db'}",
        "var_dir": tmp_path,
        "jwt_jwks": str(jwks),
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "rate_limit": "off",
    }
    fields.update(overrides)
    return Settings(**fields)


@pytest.fixture
def client(tmp_path: Path, keys: Keys) -> Iterator[TestClient[Any]]:
    with api_client(settings_for(tmp_path, keys)) as (test_client, _):
        yield test_client


def get(client: TestClient[Any], token: str) -> Any:
    return client.get(TASKS, headers={"Authorization": f"Bearer {token}"})


def hs256(payload: dict[str, Any], secret: bytes = SECRET.encode()) -> str:
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(secret))


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "Ed25519"])
def test_asymmetric_tokens_from_the_jwks_are_accepted(
    client: TestClient[Any], keys: Keys, alg: str
) -> None:
    response = get(client, keys.sign(alg, claims()))
    assert response.status_code == 200, response.text


def test_hs256_with_the_secret_is_accepted(client: TestClient[Any]) -> None:
    assert get(client, hs256(claims())).status_code == 200


def test_the_subject_is_the_principal_and_scope_gives_permissions(
    tmp_path: Path, keys: Keys
) -> None:
    with api_client(settings_for(tmp_path, keys)) as (client, runtime):
        token = keys.sign(
            "RS256", claims(sub="svc-orders", permissions=None, scope="tasks:execute")
        )
        body = {"taskDefinitionId": "calculate-order-total", "input": {}}
        response = client.post(TASKS, json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 422  # authenticated and permitted: input is checked
        ok = {"orderId": "A", "items": [{"id": "I", "quantity": 1, "price": 2.5}]}
        response = client.post(
            TASKS, json={**body, "input": ok}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        task_id = UUID(response.json()["id"])
        events = [e for _, e in runtime.service.read_log(0, 100) if e.originator_id == task_id]
        assert events[0].actor == {"id": "svc-orders", "kind": "jwt"}
        # scope without tasks:list: authenticated, but not permitted to list.
        assert get(client, token).status_code == 403


def test_permissions_array_and_scope_are_merged(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("ES256", claims(permissions=["tasks:read"], scope="openid tasks:list"))
    assert get(client, token).status_code == 200


def test_a_small_clock_skew_is_tolerated(client: TestClient[Any], keys: Keys) -> None:
    now = int(time.time())
    assert get(client, keys.sign("RS256", claims(exp=now - 5))).status_code == 200
    assert get(client, keys.sign("RS256", claims(nbf=now + 5))).status_code == 200


def test_expired_token_is_401(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("RS256", claims(exp=int(time.time()) - 120))
    assert "expired" in assert_unauthorized(get(client, token))
    assert 'error="invalid_token"' in get(client, token).headers["www-authenticate"]


def test_not_yet_valid_token_is_401(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("RS256", claims(nbf=int(time.time()) + 300))
    assert "not yet valid" in assert_unauthorized(get(client, token))


def test_token_issued_in_the_future_is_401(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("RS256", claims(iat=int(time.time()) + 300))
    assert "issued in the future" in assert_unauthorized(get(client, token))


def test_wrong_issuer_is_401(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("ES256", claims(iss="https://evil.example.test/"))
    assert "wrong issuer" in assert_unauthorized(get(client, token))


def test_wrong_audience_is_401(client: TestClient[Any], keys: Keys) -> None:
    token = keys.sign("ES256", claims(aud="another-service"))
    assert "wrong audience" in assert_unauthorized(get(client, token))
    listed = keys.sign("ES256", claims(aud=["another-service", AUDIENCE]))
    assert get(client, listed).status_code == 200


@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud"])
def test_a_missing_required_claim_is_401(client: TestClient[Any], keys: Keys, claim: str) -> None:
    token = keys.sign("RS256", claims(**{claim: None}))
    assert claim in assert_unauthorized(get(client, token))


def test_alg_none_is_401(client: TestClient[Any]) -> None:
    assert "algorithm" in assert_unauthorized(get(client, unsigned(claims())))


def forge_hs256(payload: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token whose HMAC key is public material (the algorithm-confusion attack)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_hs256_signed_with_the_rs256_public_key_is_401(tmp_path: Path, keys: Keys) -> None:
    kid = str(keys.rsa.kid)
    forged_pem = forge_hs256(claims(), keys.rsa.as_pem(private=False), kid)
    forged_jwk = forge_hs256(claims(), json.dumps(keys.rsa.as_dict(private=False)).encode(), kid)
    # Only a JWKS configured: HS256 is not an accepted algorithm at all.
    with api_client(settings_for(tmp_path, keys, jwt_secret=None)) as (client, _):
        assert "algorithm" in assert_unauthorized(get(client, forged_pem))
        assert "algorithm" in assert_unauthorized(get(client, forged_jwk))
    # A secret configured too: HS256 is checked against the secret only, never a public key.
    with api_client(settings_for(tmp_path, keys)) as (client, _):
        assert "signature" in assert_unauthorized(get(client, forged_pem))
        assert "signature" in assert_unauthorized(get(client, forged_jwk))


def test_unknown_kid_is_401(client: TestClient[Any]) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-in-the-jwks"})
    token = jwt.encode({"alg": "RS256", "kid": stranger.kid}, claims(), stranger)
    assert "unknown key" in assert_unauthorized(get(client, token))


def test_a_known_kid_with_another_algorithm_is_401(client: TestClient[Any], keys: Keys) -> None:
    """An RSA key's kid on an ES256 token: the key type must match the algorithm."""
    token = jwt.encode({"alg": "ES256", "kid": keys.rsa.kid}, claims(), keys.ec)
    assert "unknown key" in assert_unauthorized(get(client, token))


def test_a_token_signed_by_another_key_under_a_known_kid_is_401(
    client: TestClient[Any], keys: Keys
) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": str(keys.rsa.kid)})
    token = jwt.encode({"alg": "RS256", "kid": keys.rsa.kid}, claims(), impostor)
    assert "signature" in assert_unauthorized(get(client, token))


def test_tampered_payload_is_401(client: TestClient[Any], keys: Keys) -> None:
    header, _, signature = keys.sign("RS256", claims(permissions=[])).split(".")
    escalated = b64(json.dumps(claims()).encode())  # every permission, same signature
    assert "signature" in assert_unauthorized(get(client, f"{header}.{escalated}.{signature}"))


def test_tampered_signature_is_401(client: TestClient[Any], keys: Keys) -> None:
    header, payload, signature = keys.sign("ES256", claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    assert "signature" in assert_unauthorized(get(client, f"{header}.{payload}.{b64(bytes(raw))}"))


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.###.$$$",
        f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(b'[1, 2]')}.{b64(b'{}')}.{b64(b'sig')}",
    ],
)
def test_malformed_token_is_401(client: TestClient[Any], token: str) -> None:
    assert "malformed" in assert_unauthorized(get(client, token))


def test_a_validly_signed_payload_that_is_not_a_json_object_is_401(
    client: TestClient[Any],
) -> None:
    key = OctKey.import_key(SECRET.encode())
    signed = jws.serialize_compact({"alg": "HS256"}, b'"just a string"', key)
    assert "malformed" in assert_unauthorized(get(client, signed))


@pytest.mark.parametrize(
    "extra", [{"permissions": "tasks:list"}, {"permissions": [1, 2]}, {"scope": ["tasks:list"]}]
)
def test_permission_claims_of_the_wrong_type_are_401(
    client: TestClient[Any], keys: Keys, extra: dict[str, Any]
) -> None:
    token = keys.sign("RS256", claims(**extra))
    assert "must be" in assert_unauthorized(get(client, token))


def test_without_jwt_settings_bearer_tokens_are_401(tmp_path: Path, keys: Keys) -> None:
    settings = settings_for(tmp_path, keys, jwt_jwks=None, jwt_secret=None)
    with api_client(settings) as (client, _):
        assert "not accepted" in assert_unauthorized(get(client, keys.sign("RS256", claims())))


def test_a_short_hs256_secret_is_refused_at_start(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Runtime.open(settings_for(tmp_path, keys, jwt_secret="too-short"))


def test_an_unreadable_jwks_file_is_refused_at_start(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(Exception, match="cannot read JWKS"):
        Runtime.open(settings_for(tmp_path, keys, jwt_jwks=str(tmp_path / "missing.json")))


def test_a_kid_that_is_not_a_string_is_401(client: TestClient[Any]) -> None:
    header = b64(json.dumps({"alg": "RS256", "kid": 7}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}.{b64(b'signature')}"
    assert "malformed" in assert_unauthorized(get(client, token))
