"""Who is calling: the authenticated principal of a request, and why one was refused."""

from __future__ import annotations

from dataclasses import dataclass

from domain.values import Actor


@dataclass(frozen=True)
class Principal:
    """A caller that proved who it is: a JWT subject or an API key (by its key id), and
    its tenant: it sees only that tenant's tasks (None: every task; domain/tenancy.py)."""

    id: str
    kind: str  # "jwt" | "apikey"
    permissions: frozenset[str]
    tenant: str | None = None

    @property
    def actor(self) -> Actor:
        """How events name this caller."""
        return Actor(id=self.id, kind=self.kind)

    @property
    def rate_key(self) -> str:
        """Whose budget a request spends (see api/security/ratelimit.py)."""
        return f"{self.kind}:{self.id}"


class AuthFailure(Exception):
    """Credentials were given but do not prove anything: a 401.

    ``scheme`` is the challenge to answer with (``Bearer`` or ``ApiKey``); ``error`` is
    RFC 6750's error code for a bearer token (``invalid_request`` or ``invalid_token``).
    """

    def __init__(self, scheme: str, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.scheme = scheme
        self.message = message
        self.error = error


class WouldBlock(Exception):
    """Answering needs I/O (a database load, a JWKS fetch): ask again from a thread."""
