"""Helpers for the authentication, rate-limit, bulk and idempotency tests.

Real things only: keys made with joserfc, tokens signed with them, a JWKS served by a real
HTTP(S) server on 127.0.0.1 (with its own CA for https), the real app over TestClient.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from domain.permissions import ALL_PERMISSIONS
from domain.values import Actor

SECRET = "a-development-secret-of-at-least-32-bytes!"
ISSUER = "https://auth.example.test/"
AUDIENCE = "taskexec"
TASKS = "/api/v1/tasks"
OPERATOR = Actor(id="tester@test", kind="operator")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "permissions": sorted(ALL_PERMISSIONS),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class Keys:
    """One signing key per accepted asymmetric algorithm, with kids."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        self.okp = OKPKey.generate_key("Ed25519", parameters={"kid": "okp-1"})

    def jwks(self, *keys: Key) -> dict[str, Any]:
        chosen = keys or (self.rsa, self.ec, self.okp)
        return {"keys": [key.as_dict(private=False) for key in chosen]}

    def sign(self, alg: str, payload: dict[str, Any], key: Key | None = None, **header: Any) -> str:
        by_alg: dict[str, Key] = {"RS256": self.rsa, "ES256": self.ec}
        chosen = key or by_alg.get(alg, self.okp)
        header = {"alg": alg, "kid": chosen.kid, **header}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # EdDSA: still what issuers use
            return jwt.encode(header, payload, chosen, algorithms=[alg])


def unsigned(payload: dict[str, Any]) -> str:
    """An ``alg: none`` token."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


class JwksServer:
    """Serves ``document`` at ``/jwks.json`` on 127.0.0.1, counting requests."""

    def __init__(self, document: dict[str, Any], tls: ssl.SSLContext | None = None) -> None:
        self.document = document
        self.hits = 0
        self.fail = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                if server.fail or self.path != "/jwks.json":
                    self.send_response(503 if server.fail else 404)
                    self.end_headers()
                    return
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def tls_for_loopback(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA (its PEM path, for SSL_CERT_FILE) and a server context for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskexec test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


@contextmanager
def api_client(settings: Settings) -> Iterator[tuple[TestClient[Any], Runtime]]:
    """The real app on ``settings`` (no NATS: nothing here needs workers)."""
    runtime = Runtime.open(settings)
    with TestClient(create_app(runtime, None)) as client:
        yield client, runtime


def new_key(runtime: Runtime, *permissions: str, name: str = "test") -> str:
    key, _ = runtime.apikeys.create(
        name=name, permissions=list(permissions or sorted(ALL_PERMISSIONS)), actor=OPERATOR
    )
    return key


def assert_envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def assert_unauthorized(response: Any) -> str:
    """A 401 in the envelope with a Bearer challenge; returns the message."""
    error = assert_envelope(response, 401, "UNAUTHORIZED")
    assert 'Bearer realm="taskexec"' in response.headers["www-authenticate"]
    message: str = error["message"]
    return message


@contextmanager
def serving(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    """The app over a runtime of its own (no NATS, no rate limits), with a key of every
    permission on its client."""
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    runtime = Runtime.open(settings)
    try:
        with TestClient(create_app(runtime, None)) as client:
            client.headers["X-API-Key"] = new_key(runtime)
            yield client, runtime
    finally:
        runtime.close()
