"""API keys for service accounts: create, look up, revoke, list.

A key reads ``tex_<key id>_<secret>``: a recognisable prefix (so secret scanners and people
can tell what leaked), a public key id (16 hex digits) and 256 random bits of secret
(52 base32 characters). The key id names the aggregate (``uuid5`` of a fixed namespace), so
checking a key is one aggregate load. Only ``SHA-256(key)`` is stored: the secret is random
and long, so a fast hash cannot be brute-forced, and a slow password hash would only make
every request expensive. Hashes are compared in constant time.

The keys live in the TaskService's event store (one eventsourcing Application per process);
this class is a thin command facade over it. Synchronous: call it from threads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application

from commands.errors import Conflict, NotFound, ValidationFailed
from domain.apikey import ApiKey, ApiKeyAlreadyRevoked
from domain.errors import InvalidValue
from domain.values import Actor

KEY_PREFIX = "tex_"
# Fixed forever: stored aggregate ids are derived from it.
APIKEY_NAMESPACE = UUID("5b0e6a4c-3f1d-5c8e-9a7b-2d4f6e8a0c13")
_KEY = re.compile(r"tex_([0-9a-f]{16})_([a-z2-7]{52})")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
TOPICS = (ApiKey.Created.TOPIC, ApiKey.Revoked.TOPIC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def generate_key() -> tuple[str, str]:
    """A fresh ``(key id, key)``."""
    key_id = secrets.token_hex(8)
    secret = base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=").lower()
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}"


def parse_key_id(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def is_key_id(text: str) -> bool:
    return _KEY_ID.fullmatch(text) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def aggregate_id(key_id: str) -> UUID:
    return uuid5(APIKEY_NAMESPACE, key_id)


@dataclass(frozen=True)
class ApiKeyRecord:
    """An immutable snapshot of one key (safe to cache and to share between threads)."""

    key_id: str
    name: str
    secret_hash: str
    permissions: frozenset[str]
    created_at: datetime
    created_by: Mapping[str, str]
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: Mapping[str, str] | None
    tenant: str | None = None  # its principal's tenant (domain/tenancy.py); None: none

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyRecord:
        return cls(
            key_id=key.key_id,
            name=key.name,
            secret_hash=key.secret_hash,
            permissions=key.permissions,
            created_at=key.created_at,
            created_by=dict(key.created_by),
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            revoked_by=dict(key.revoked_by) if key.revoked_by is not None else None,
            tenant=key.tenant,
        )

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this key: constant-time comparison of the hashes."""
        return hmac.compare_digest(self.secret_hash, hash_key(key))

    def status(self, at: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``at``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and at >= self.expires_at:
            return "expired"
        return "active"


class ApiKeyService:
    """Commands and lookups on API keys, recorded in ``app``'s event store."""

    def __init__(
        self,
        app: Application[UUID],
        clock: Callable[[], datetime] = utcnow,
        generate: Callable[[], tuple[str, str]] = generate_key,
    ) -> None:
        self._app = app
        self._clock = clock
        self._generate = generate

    def create(
        self,
        *,
        name: str,
        permissions: list[str],
        actor: Actor,
        expires_at: datetime | None = None,
        tenant: str | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Record a new key; return the key itself (shown once, never stored) and its record.
        ``tenant``: the key's principal sees only that tenant's tasks (None: every task)."""
        key_id, key = self._generate()
        try:
            aggregate = ApiKey.create(
                aggregate_id=aggregate_id(key_id),
                key_id=key_id,
                name=name,
                secret_hash=hash_key(key),
                permissions=permissions,
                expires_at=expires_at,
                at=self._clock(),
                actor=actor,
                tenant=tenant,
            )
        except InvalidValue as exc:
            raise ValidationFailed(str(exc)) from None
        self._app.save(aggregate)
        return key, ApiKeyRecord.of(aggregate)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        key = self._load(key_id)
        return ApiKeyRecord.of(key) if key is not None else None

    def check(self, key: str) -> ApiKeyRecord | None:
        """The record of ``key`` if it exists and the secret matches (whatever its status)."""
        key_id = parse_key_id(key)
        if key_id is None:
            return None
        record = self.get(key_id)
        if record is None or not record.matches(key):
            return None
        return record

    def revoke(self, key_id: str, actor: Actor) -> ApiKeyRecord:
        """Revoke a key: NotFound if there is none, Conflict if it is revoked already."""
        key = self._load(key_id)
        if key is None:
            raise NotFound(f"API key {key_id} not found", {"keyId": key_id})
        try:
            key.revoke(at=self._clock(), actor=actor)
        except ApiKeyAlreadyRevoked as exc:
            raise Conflict(str(exc), {"keyId": key_id}) from None
        self._app.save(key)
        return ApiKeyRecord.of(key)

    def list(self, page_size: int = 500) -> list[ApiKeyRecord]:
        """Every key ever created, oldest first (the notification log filtered by topic)."""
        ids: list[UUID] = []
        start = 1
        while True:
            notifications = self._app.recorder.select_notifications(
                start=start, limit=page_size, topics=[ApiKey.Created.TOPIC]
            )
            ids.extend(UUID(str(n.originator_id)) for n in notifications)
            if len(notifications) < page_size:
                break
            start = notifications[-1].id + 1
        records = []
        for key_uuid in ids:
            key: Any = self._app.repository.get(key_uuid)
            records.append(ApiKeyRecord.of(key))
        return records

    def _load(self, key_id: str) -> ApiKey | None:
        if not is_key_id(key_id):
            return None
        try:
            key: Any = self._app.repository.get(aggregate_id(key_id))
        except AggregateNotFoundError:
            return None
        if not isinstance(key, ApiKey):
            return None
        return key
