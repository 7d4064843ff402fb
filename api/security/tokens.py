"""Bearer JWTs from an external auth service, verified with joserfc.

- Algorithms: an explicit allow-list. ``HS256`` only with ``TASKEXEC_JWT_SECRET`` (and then
  only with that secret); ``RS256``, ``ES256`` and ``EdDSA``/``Ed25519`` only with a JWKS
  (and then only with a key of the matching type). ``none`` is never accepted, and an HS256
  token can never be checked against a public key.
- Claims: ``exp`` and ``sub`` required; ``nbf`` and ``iat`` honoured; ``iss`` and ``aud``
  required and checked when configured; ``LEEWAY_S`` of clock skew tolerated.
- Permissions: a ``permissions`` array and/or a space-separated ``scope`` (both accepted).
- The principal is ``sub``; its tenant is the claim ``tenant_claim`` names
  (``TASKEXEC_JWT_TENANT_CLAIM``), when set and present (domain/tenancy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import GuestProtocol, Key, OctKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from api.security.jwks import KEY_TYPES, JwksSource
from api.security.principal import AuthFailure, Principal
from api.settings_forms import JWT_SECRET_MIN_BYTES
from domain.errors import InvalidValue
from domain.tenancy import check_tenant

LEEWAY_S = 30
HMAC_ALGORITHM = "HS256"
_CLAIM_MESSAGES = {
    "nbf": "token is not yet valid (nbf)",
    "iss": "token has the wrong issuer (iss)",
    "aud": "token has the wrong audience (aud)",
    "iat": "token was issued in the future (iat)",
    "exp": "token has an invalid expiry (exp)",
    "sub": "token has an invalid subject (sub)",
}


class _Registry(JWSRegistry):
    """Exactly the allowed algorithms, and no per-call SecurityWarning for EdDSA.

    joserfc warns on every use of ``EdDSA`` (RFC 9864 deprecates the name in favour of
    ``Ed25519``); issuers still use it, so it is accepted here, silently, like ``Ed25519``.
    """

    def get_alg(self, name: str) -> Any:
        if name not in self.algorithms or not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises AuthFailure (or WouldBlock)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: JwksSource | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = LEEWAY_S,
        clock: Callable[[], float] = time.time,
        tenant_claim: str | None = None,
    ) -> None:
        self._secret: Key | None = None
        if secret is not None:
            raw = secret.encode("utf-8")
            if len(raw) < JWT_SECRET_MIN_BYTES:
                raise ValueError(
                    f"TASKEXEC_JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes long"
                )
            self._secret = OctKey.import_key(raw)
        self._jwks = jwks
        self.algorithms: frozenset[str] = frozenset(
            ([HMAC_ALGORITHM] if self._secret is not None else [])
            + (list(KEY_TYPES) if jwks is not None else [])
        )
        self._registry = _Registry(algorithms=sorted(self.algorithms), strict_check_header=False)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._tenant_claim = tenant_claim

    @property
    def enabled(self) -> bool:
        return bool(self.algorithms)

    def verify(self, token: str, *, blocking: bool) -> Principal:
        if not self.enabled:
            raise AuthFailure("Bearer", "bearer tokens are not accepted here (no JWT issuer set)")
        try:
            claims = jwt.decode(token, self._key_for(blocking), registry=self._registry).claims
        except AuthFailure:
            raise
        except UnsupportedAlgorithmError:
            raise AuthFailure("Bearer", "token algorithm is not accepted") from None
        except BadSignatureError:
            raise AuthFailure("Bearer", "token signature is invalid") from None
        except (JoseError, ValueError, TypeError, KeyError):
            # Not three base64url parts, a header or payload that is not a JSON object, ...
            raise AuthFailure("Bearer", "token is malformed") from None
        self._check_claims(claims)
        return Principal(
            id=claims["sub"],
            kind="jwt",
            permissions=_permissions(claims),
            tenant=_tenant(claims, self._tenant_claim),
        )

    def _key_for(self, blocking: bool) -> Callable[[GuestProtocol], Key]:
        """Resolves the verification key from the (already allow-listed) header."""

        def resolve(obj: GuestProtocol) -> Key:
            header = obj.headers()
            alg = header["alg"]
            if alg == HMAC_ALGORITHM:
                assert self._secret is not None  # HS256 is allowed only with a secret
                return self._secret
            assert self._jwks is not None  # the others only with a JWKS
            # joserfc has checked the registered header parameters: kid is a str or absent.
            key = self._jwks.find(header.get("kid"), alg, blocking=blocking)
            if key is None:
                raise AuthFailure("Bearer", "token is signed with an unknown key (kid)")
            return key

        return resolve

    def _check_claims(self, claims: dict[str, Any]) -> None:
        options: dict[str, ClaimsOption] = {
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if self._issuer is not None:
            options["iss"] = {"essential": True, "value": self._issuer}
        if self._audience is not None:
            options["aud"] = {"essential": True, "value": self._audience}
        registry = JWTClaimsRegistry(now=lambda: int(self._clock()), leeway=self._leeway, **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise AuthFailure("Bearer", "token has expired (exp)") from None
        except MissingClaimError as exc:
            raise AuthFailure("Bearer", f"token lacks a required claim: {exc.claim}") from None
        except InvalidClaimError as exc:
            message = _CLAIM_MESSAGES.get(exc.claim, f"token has an invalid claim: {exc.claim}")
            raise AuthFailure("Bearer", message) from None


def _tenant(claims: dict[str, Any], name: str | None) -> str | None:
    """The tenant the claim ``name`` gives (None: no claim configured, or none in the
    token: the global view, as before tenants). A value that is not a tenant's name is a
    401, never a principal without a tenant."""
    if name is None or claims.get(name) is None:
        return None
    value = claims[name]
    try:
        return check_tenant(value)
    except InvalidValue as exc:
        raise AuthFailure("Bearer", f"token claim '{name}' is not a tenant: {exc}") from None


def _permissions(claims: dict[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    listed = claims.get("permissions")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise AuthFailure("Bearer", "token claim 'permissions' must be an array of strings")
        found.update(listed)
    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise AuthFailure("Bearer", "token claim 'scope' must be a string")
        found.update(part for part in scope.split(" ") if part)  # RFC 6749: spaces only
    return frozenset(found)
