"""Authentication: ``Authorization: Bearer <JWT>`` or ``X-API-Key: tex_…``, to a Principal.

Checks that need no I/O run on the event loop; a database load (an API key not in the
cache) or a JWKS fetch raises WouldBlock, and the gate asks again from a thread.

API keys are cached for ``ttl`` seconds (found and not found alike), so a new key works
and a revoked one stops working within ``ttl`` on every replica, without a restart. The
secret, the expiry and the revocation are checked on every request against the cached record.
The cache is bounded and least-recently-used first out; concurrent lookups of one key id
share a single load (single flight).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from api.security.principal import AuthFailure, Principal, WouldBlock
from api.security.tokens import TokenVerifier
from commands.apikeys import KEY_PREFIX, ApiKeyRecord, parse_key_id

API_KEY_HEADER = b"x-api-key"
AUTHORIZATION = b"authorization"
MAX_CREDENTIAL_BYTES = 16_384


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "Bearer" | "ApiKey"
    value: str


def credentials_from(headers: Iterable[tuple[bytes, bytes]]) -> Credentials | None:
    """The one credential a request carries, None if none; AuthFailure if unusable."""
    found: list[Credentials] = []
    for name, raw in headers:
        if name not in (AUTHORIZATION, API_KEY_HEADER):
            continue
        if len(raw) > MAX_CREDENTIAL_BYTES:
            raise AuthFailure(_scheme(name), "credential is too long", "invalid_request")
        try:
            value = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise AuthFailure(_scheme(name), "credential is not ASCII", "invalid_request") from None
        if name == API_KEY_HEADER:
            found.append(Credentials("ApiKey", value))
            continue
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthFailure(
                "Bearer", "Authorization must use the Bearer scheme", "invalid_request"
            )
        found.append(Credentials("Bearer", token.strip()))
    if len(found) > 1:
        raise AuthFailure(
            found[0].scheme,
            "send exactly one credential (Authorization or X-API-Key)",
            "invalid_request",
        )
    if found and not found[0].value:
        raise AuthFailure(found[0].scheme, "credential is empty", "invalid_request")
    return found[0] if found else None


def _scheme(header: bytes) -> str:
    return "ApiKey" if header == API_KEY_HEADER else "Bearer"


class _Load:
    """One key id's load in progress; concurrent lookups of that id wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.record: ApiKeyRecord | None = None
        self.error: BaseException | None = None


class ApiKeyCache:
    """Key id -> record (or None: no such key), each entry for ``ttl`` seconds. Thread-safe.

    At most ``max_entries`` entries, least recently used out first (a hit moves an entry to
    the end), so a flood of made-up key ids cannot push out the keys in use for long.
    Concurrent lookups of one key id share one load (single flight).
    """

    def __init__(
        self,
        lookup: Callable[[str], ApiKeyRecord | None],
        ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, ApiKeyRecord | None]] = OrderedDict()
        self._loading: dict[str, _Load] = {}
        self.loads = 0  # lookups made (not served by the cache or by another's load)

    def get(self, key_id: str, *, blocking: bool) -> ApiKeyRecord | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is not None and now - entry[0] < self._ttl:
                self._entries.move_to_end(key_id)
                return entry[1]
            if not blocking:
                raise WouldBlock
            load = self._loading.get(key_id)
            leader = load is None
            if load is None:
                load = self._loading[key_id] = _Load()
                self.loads += 1
        if not leader:
            load.done.wait()
            if load.error is not None:
                raise RuntimeError("API key lookup failed") from load.error
            return load.record
        try:
            record = self._lookup(key_id)
        except BaseException as exc:
            load.error = exc
            raise
        else:
            load.record = record
            with self._lock:
                self._entries[key_id] = (self._clock(), record)
                self._entries.move_to_end(key_id)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        finally:
            with self._lock:
                del self._loading[key_id]
            load.done.set()
        return record


class Authenticator:
    """Bearer tokens via a TokenVerifier, API keys via an ApiKeyCache."""

    def __init__(
        self,
        tokens: TokenVerifier,
        apikeys: ApiKeyCache,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tokens = tokens
        self._apikeys = apikeys
        self._clock = clock

    def authenticate(self, credentials: Credentials, *, blocking: bool) -> Principal:
        if credentials.scheme == "Bearer":
            return self._tokens.verify(credentials.value, blocking=blocking)
        return self._api_key(credentials.value, blocking)

    def _api_key(self, key: str, blocking: bool) -> Principal:
        key_id = parse_key_id(key)
        if key_id is None:
            raise AuthFailure("ApiKey", f"invalid API key (expected {KEY_PREFIX}...)")
        record = self._apikeys.get(key_id, blocking=blocking)
        # Unknown id and wrong secret answer alike: no oracle for which key ids exist.
        if record is None or not record.matches(key):
            raise AuthFailure("ApiKey", "invalid API key")
        status = record.status(self._clock())
        if status != "active":
            raise AuthFailure("ApiKey", f"API key {status}")
        return Principal(
            id=record.key_id, kind="apikey", permissions=record.permissions, tenant=record.tenant
        )
