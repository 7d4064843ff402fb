"""Public keys of the external auth service: a JWKS from a file or an https URL.

Fetched at start and kept in memory. A token naming an unknown ``kid`` (a rotated key)
triggers one refetch, and such refetches happen at most once per ``refetch_interval``, so
tokens with made-up key ids cannot make this service hammer the auth service. Keys older
than ``max_age`` are refreshed on the next lookup (and kept if the refresh fails), so a key
withdrawn by the auth service stops working here too.

Plain ``http`` is accepted only for loopback addresses (a local development IdP). A private
CA for an https URL is trusted through ``SSL_CERT_FILE`` (httpx reads it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from api.security.principal import WouldBlock
from api.settings_forms import jwks_location_ok

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1_000_000
# alg -> (kty, crv): which keys may verify which algorithm. Nothing else is accepted.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),  # RFC 9864's fully specified name for EdDSA on Ed25519
}
_EDDSA = {"EdDSA", "Ed25519"}


class JwksError(Exception):
    """The key set cannot be read or is not a usable JWKS."""


def check_location(location: str) -> str:
    """``location`` if it is a file path, an https URL, or an http URL on loopback."""
    if jwks_location_ok(location):
        return location
    raise ValueError(
        f"TASKEXEC_JWT_JWKS must be a file path or an https URL "
        f"(http only on loopback): {location!r}"
    )


class JwksSource:
    """The current verification keys, with bounded refetching. Thread-safe."""

    def __init__(
        self,
        location: str,
        *,
        refetch_interval: float = 30.0,
        max_age: float = 600.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = check_location(location)
        self.is_url = "://" in location
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[Key] = []
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._unknown_kid_at: float | None = None
        self.fetches = 0  # attempts so far (for operators' logs and for tests)

    def start(self) -> None:
        """Fetch at start. A file that cannot be read is a configuration error (raises);
        an unreachable URL is logged, and the keys are fetched again when a token needs them.
        """
        try:
            with self._lock:
                self._refresh("start")
        except JwksError:
            if not self.is_url:
                raise
            log.exception("JWKS %s unavailable at start; will retry on demand", self.location)

    def find(self, kid: str | None, alg: str, *, blocking: bool) -> Key | None:
        """The key for a token's ``kid`` and ``alg``, or None. Raises WouldBlock when a
        fetch is due and ``blocking`` is false."""
        now = self._clock()
        if self._stale(now):
            if not blocking:
                raise WouldBlock
            self._refresh_if(self._stale, "max age")
        key = self._match(kid, alg)
        if key is None and kid is not None and self._may_refetch_unknown(now):
            if not blocking:
                raise WouldBlock
            self._refresh_if(self._may_refetch_unknown, f"unknown kid {kid!r}", unknown=True)
            key = self._match(kid, alg)
        return key

    # -- internals ------------------------------------------------------------------------

    def _stale(self, now: float) -> bool:
        expired = self._loaded_at is None or now - self._loaded_at >= self._max_age
        return expired and (
            self._attempted_at is None or now - self._attempted_at >= self._refetch_interval
        )

    def _may_refetch_unknown(self, now: float) -> bool:
        return self._unknown_kid_at is None or now - self._unknown_kid_at >= self._refetch_interval

    def _refresh_if(self, due: Callable[[float], bool], reason: str, unknown: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if not due(now):  # another thread refreshed while this one waited
                return
            if unknown:
                self._unknown_kid_at = now
            try:
                self._refresh(reason)
            except JwksError:
                log.exception("JWKS refresh (%s) failed; keeping %d keys", reason, len(self._keys))

    def _refresh(self, reason: str) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        keys = self._fetch()
        self._keys = keys
        self._loaded_at = self._clock()
        log.info("JWKS %s loaded (%s): %d keys", self.location, reason, len(keys))

    def _fetch(self) -> list[Key]:
        try:
            if self.is_url:
                response = httpx.get(
                    self.location,
                    timeout=self._timeout,
                    follow_redirects=False,
                    headers={"accept": "application/json"},
                )
                response.raise_for_status()
                body = response.content
            else:
                body = Path(self.location).read_bytes()
        except (httpx.HTTPError, OSError) as exc:
            raise JwksError(f"cannot read JWKS {self.location}: {exc}") from exc
        if len(body) > MAX_JWKS_BYTES:
            raise JwksError(f"JWKS {self.location} is larger than {MAX_JWKS_BYTES} bytes")
        try:
            document: Any = json.loads(body)
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise JwksError(f"JWKS {self.location} has no 'keys' array")
            key_set = KeySet.import_key_set({"keys": document["keys"]})
        except (ValueError, JoseError) as exc:
            raise JwksError(f"JWKS {self.location} is not a usable key set: {exc}") from exc
        # Only asymmetric keys: an HMAC secret never comes from a published key set.
        return [key for key in key_set.keys if key.key_type in {"RSA", "EC", "OKP"}]

    def _match(self, kid: str | None, alg: str) -> Key | None:
        kty, crv = KEY_TYPES[alg]
        candidates = [
            key
            for key in self._keys
            if key.key_type == kty
            and (crv is None or key.get("crv") == crv)
            and key.get("use") in (None, "sig")
            and _alg_fits(key.get("alg"), alg)
            and (kid is None or key.kid == kid)
        ]
        if kid is None and len(candidates) != 1:
            return None  # without a kid, only an unambiguous key set will do
        return candidates[0] if candidates else None


def _alg_fits(declared: Any, alg: str) -> bool:
    if declared is None or declared == alg:
        return True
    return declared in _EDDSA and alg in _EDDSA
