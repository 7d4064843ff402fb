"""The ApiKey aggregate: a service account's key, from creation to revocation.

Only a hash of the key is ever recorded. Creation and revocation are events that name
their actor, so an auditor can tell who could act, from when until when, and who decided.
Topics are pinned and versioned, like the Task aggregate's.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.chain import ChainedAggregate
from domain.errors import DomainError, InvalidValue
from domain.permissions import unknown_permissions
from domain.tenancy import check_tenant
from domain.values import Actor

NAME_MAX = 100
_HASH = re.compile(r"[0-9a-f]{64}")


class ApiKeyAlreadyRevoked(DomainError):
    """Revoke was asked of a key that is revoked already."""


class ApiKey(ChainedAggregate):
    """One API key: its public id, name, permissions, expiry, and whether it was revoked."""

    TOPIC = "taskexec.apikey.v1"

    class Event(ChainedAggregate.Event):
        """Base of every API-key event (never stored itself): who caused it (and the
        hash chain's ``prev_hash`` and ``hash``: see domain/chain.py)."""

        actor: dict[str, str]

    class Created(Event, Aggregate.Created):
        TOPIC = "taskexec.apikey.created.v1"
        key_id: str
        name: str
        secret_hash: str  # SHA-256 (hex) of the whole key string
        permissions: list[str]
        expires_at: str | None  # ISO 8601, UTC; None: never
        tenant: str | None = None  # its principal's tenant (domain/tenancy.py); None: none

        def apply(self, aggregate: Any) -> None:
            key: ApiKey = aggregate
            key.key_id = self.key_id
            key.name = self.name
            key.secret_hash = self.secret_hash
            key.permissions = frozenset(self.permissions)
            key.expires_at = (
                datetime.fromisoformat(self.expires_at) if self.expires_at is not None else None
            )
            key.created_by = dict(self.actor)
            key.tenant = self.tenant
            key.revoked_at = None
            key.revoked_by = None

    class Revoked(Event):
        TOPIC = "taskexec.apikey.revoked.v1"

        def apply(self, aggregate: Any) -> None:
            key: ApiKey = aggregate
            key.revoked_at = self.timestamp
            key.revoked_by = dict(self.actor)

    def __init__(self) -> None:
        # Placeholders, so that every attribute is declared once with its type;
        # Created.apply sets the real values straight after.
        self.key_id: str = ""
        self.name: str = ""
        self.secret_hash: str = ""
        self.permissions: frozenset[str] = frozenset()
        self.expires_at: datetime | None = None
        self.created_by: dict[str, str] = {}
        self.revoked_at: datetime | None = None
        self.revoked_by: dict[str, str] | None = None
        self.tenant: str | None = None

    @classmethod
    def create(
        cls,
        *,
        aggregate_id: UUID,
        key_id: str,
        name: str,
        secret_hash: str,
        permissions: list[str],
        expires_at: datetime | None,
        at: datetime,
        actor: Actor,
        tenant: str | None = None,
    ) -> ApiKey:
        """A new, active key. Permissions must be known; an expiry must lie in the future;
        a tenant (its principal's: it sees only that tenant's tasks) must be a name."""
        name = name.strip()
        if not name or len(name) > NAME_MAX or not name.isprintable():
            raise InvalidValue(f"a key name is 1 to {NAME_MAX} printable characters")
        if not _HASH.fullmatch(secret_hash):
            raise InvalidValue("secret_hash must be a hex SHA-256 digest")
        if not permissions:
            raise InvalidValue("a key needs at least one permission")
        unknown = unknown_permissions(permissions)
        if unknown:
            raise InvalidValue(f"unknown permissions: {', '.join(unknown)}")
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidValue("expires_at must carry a time zone")
            if expires_at <= at:
                raise InvalidValue("expires_at must lie in the future")
        if tenant is not None:
            check_tenant(tenant)
        return cls._create(
            cls.Created,
            id=aggregate_id,
            timestamp=at,
            actor=actor.as_dict(),
            key_id=key_id,
            name=name,
            secret_hash=secret_hash,
            permissions=sorted(set(permissions)),
            expires_at=expires_at.isoformat() if expires_at is not None else None,
            tenant=tenant,
        )

    @property
    def created_at(self) -> datetime:
        return self.created_on

    def revoke(self, *, at: datetime, actor: Actor) -> None:
        """Withdraw the key for good."""
        if self.revoked_at is not None:
            raise ApiKeyAlreadyRevoked(f"API key {self.key_id} was revoked at {self.revoked_at}")
        self.trigger_event(self.Revoked, timestamp=at, actor=actor.as_dict())

    def status(self, at: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at the moment ``at``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and at >= self.expires_at:
            return "expired"
        return "active"
