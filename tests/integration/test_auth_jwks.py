"""A JWKS served over real HTTP(S) on 127.0.0.1: fetched at start, refetched once on an
unknown kid (and at most once per interval), refreshed when old, kept when the auth
service is down. https uses a private CA trusted through SSL_CERT_FILE; plain http is
accepted for loopback only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from api.runtime import Runtime
from api.security.jwks import JwksError, JwksSource, check_location
from api.security.principal import WouldBlock
from api.settings import Settings
from tests.fakes import FakeClock
from tests.security_support import (
    AUDIENCE,
    ISSUER,
    TASKS,
    JwksServer,
    Keys,
    api_client,
    assert_unauthorized,
    claims,
    tls_for_loopback,
)


def settings(tmp_path: Path, jwks: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'taskexec.db'}",
        var_dir=tmp_path,
        jwt_jwks=jwks,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        rate_limit="off",
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_https_jwks_with_a_private_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys()
    ca, tls = tls_for_loopback(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with JwksServer(keys.jwks(), tls=tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with api_client(settings(tmp_path, server.url)) as (client, _):
            assert server.hits == 1  # fetched at start
            for alg in ("RS256", "ES256", "EdDSA"):
                response = client.get(TASKS, headers=bearer(keys.sign(alg, claims())))
                assert response.status_code == 200, response.text
            assert server.hits == 1  # cached


def test_https_jwks_from_an_untrusted_certificate_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys()
    _, tls = tls_for_loopback(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with JwksServer(keys.jwks(), tls=tls) as server:
        source = JwksSource(server.url)
        source.start()  # an unusable URL at start is logged; the service still starts
        assert "cannot read JWKS" in caplog.text
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        assert source.find(keys.rsa.kid, "RS256", blocking=True) is None
        assert server.hits == 0  # no HTTP request ever got through


def test_a_rotated_key_is_fetched_once_and_made_up_kids_cause_no_storm(tmp_path: Path) -> None:
    keys = Keys()
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    with (
        JwksServer(keys.jwks(keys.rsa)) as server,
        api_client(settings(tmp_path, server.url)) as (client, _),
    ):
        assert server.hits == 1
        server.document = keys.jwks(keys.rsa, rotated)  # the auth service rotates
        token = keys.sign("RS256", claims(), key=rotated)
        assert client.get(TASKS, headers=bearer(token)).status_code == 200
        assert server.hits == 2  # one refetch for the unknown kid
        assert client.get(TASKS, headers=bearer(token)).status_code == 200
        assert server.hits == 2

        for n in range(20):
            stranger = RSAKey.generate_key(2048, parameters={"kid": f"made-up-{n}"})
            made_up = keys.sign("RS256", claims(), key=stranger)
            message = assert_unauthorized(client.get(TASKS, headers=bearer(made_up)))
            assert "unknown key" in message
        # That refetch opened the interval: twenty made-up kids cause no fetch at all.
        assert server.hits == 2


def test_an_auth_service_down_at_start_is_fetched_on_demand(tmp_path: Path) -> None:
    keys = Keys()
    with JwksServer(keys.jwks()) as server:
        server.fail = True
        with api_client(settings(tmp_path, server.url)) as (client, _):
            assert server.hits == 1
            server.fail = False
            token = keys.sign("ES256", claims())
            assert client.get(TASKS, headers=bearer(token)).status_code == 200
            assert server.hits == 2


def test_refetch_on_unknown_kid_is_limited_per_interval(tmp_path: Path) -> None:
    keys = Keys()
    clock = FakeClock(1000.0)
    with JwksServer(keys.jwks(keys.rsa)) as server:
        source = JwksSource(server.url, refetch_interval=30, max_age=600, clock=clock)
        source.start()
        assert server.hits == 1
        with pytest.raises(WouldBlock):  # a fetch is due: not on the event loop
            source.find("unknown", "RS256", blocking=False)
        assert source.find("unknown", "RS256", blocking=True) is None
        assert server.hits == 2
        clock.now += 10
        assert source.find("unknown", "RS256", blocking=False) is None  # no fetch due
        assert server.hits == 2
        clock.now += 21
        assert source.find("unknown", "RS256", blocking=True) is None
        assert server.hits == 3
        assert source.find(keys.rsa.kid, "RS256", blocking=False) is not None


def test_old_keys_are_refreshed_and_kept_when_the_refresh_fails(tmp_path: Path) -> None:
    keys = Keys()
    clock = FakeClock(1000.0)
    with JwksServer(keys.jwks(keys.rsa, keys.ec)) as server:
        source = JwksSource(server.url, refetch_interval=30, max_age=600, clock=clock)
        source.start()
        server.document = keys.jwks(keys.rsa)  # the EC key is withdrawn
        clock.now += 601
        with pytest.raises(WouldBlock):
            source.find(keys.rsa.kid, "RS256", blocking=False)
        assert source.find(keys.rsa.kid, "RS256", blocking=True) is not None
        assert server.hits == 2
        assert source.find(keys.ec.kid, "ES256", blocking=True) is None  # gone here too
        server.fail = True
        clock.now += 601
        assert source.find(keys.rsa.kid, "RS256", blocking=True) is not None  # stale-if-error


def test_only_matching_keys_verify(tmp_path: Path) -> None:
    keys = Keys()
    path = tmp_path / "jwks.json"
    document: dict[str, Any] = keys.jwks()
    document["keys"][0]["use"] = "enc"  # the RSA key is for encryption only
    document["keys"].append({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "oct-1"})
    path.write_text(json.dumps(document))
    source = JwksSource(str(path))
    source.start()
    assert source.find(keys.rsa.kid, "RS256", blocking=True) is None
    assert source.find("oct-1", "RS256", blocking=True) is None  # no HMAC keys from a JWKS
    assert source.find(keys.ec.kid, "ES256", blocking=True) is not None
    assert source.find(None, "ES256", blocking=True) is not None  # one EC key: unambiguous
    assert source.find(keys.okp.kid, "EdDSA", blocking=True) is not None
    assert source.find(keys.okp.kid, "Ed25519", blocking=True) is not None
    assert source.find(keys.okp.kid, "ES256", blocking=True) is None


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    assert check_location("http://127.0.0.1:8080/jwks.json")
    assert check_location("http://[::1]:8080/jwks.json")
    assert check_location("http://localhost/jwks.json")
    assert check_location("https://auth.example.test/.well-known/jwks.json")
    assert check_location("/etc/taskexec/jwks.json")
    for bad in ("http://auth.example.test/jwks.json", "http://10.0.0.1/jwks", "ftp://x/jwks"):
        with pytest.raises(ValueError, match="https URL"):
            check_location(bad)
    with pytest.raises(ValueError, match="https URL"):
        Runtime.open(settings(tmp_path, "http://auth.example.test/jwks.json"))


@pytest.mark.parametrize(
    "content", ["not json", '{"keys": 1}', '{"keys": []}', '{"keys": [{"kty": "nope"}]}', "[]"]
)
def test_a_jwks_file_that_is_no_key_set_is_refused_at_start(tmp_path: Path, content: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(JwksError):
        JwksSource(str(path)).start()


def test_an_oversized_jwks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [], "padding": "x" * 1_000_001}))
    with pytest.raises(JwksError, match="larger than"):
        JwksSource(str(path)).start()
