"""Stand-ins shared by the unit tests: a NATS client, a pulled message, the cancel
markers and a clock, each written once. They record what the code under test did with
them; the real ones are exercised in tests/integration."""

from __future__ import annotations

from typing import Any


class FakeMsg:
    """A pulled JetStream message; ``calls`` lists what was done with it, in order:
    ``("ack", None)``, ``("nak", delay)``, ``("term", None)``."""

    def __init__(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.data = data
        self.headers = headers
        self.calls: list[tuple[str, Any]] = []

    @property
    def actions(self) -> list[str]:
        """What was done with it, without the delays: ``["ack"]``, ``["nak"]``, …"""
        return [name for name, _ in self.calls]

    async def ack(self) -> None:
        self.calls.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.calls.append(("nak", delay))

    async def term(self) -> None:
        self.calls.append(("term", None))


class FakeMarkers:
    """The worker's cancel markers: ``marked`` task ids are cancelled (a dict: each with
    its marker's task version; a set: version 0, a marker older than that field); with
    ``error`` the bucket cannot be read. ``asked`` keeps every lookup."""

    def __init__(
        self, marked: set[str] | dict[str, int] | None = None, error: Exception | None = None
    ) -> None:
        self.asked: list[list[str]] = []
        self._marked = marked if isinstance(marked, dict) else dict.fromkeys(marked or (), 0)
        self._error = error

    async def marked(self, task_ids: list[str]) -> set[str]:
        return set(await self.versions(task_ids))

    async def versions(self, task_ids: list[str]) -> dict[str, int]:
        self.asked.append(list(task_ids))
        if self._error is not None:
            raise self._error
        return {task_id: v for task_id, v in self._marked.items() if task_id in task_ids}


class FakeNats:
    """A connected NATS client whose ``jetstream()`` is ``js`` (None: never used)."""

    def __init__(self, js: Any = None) -> None:
        self.js = js
        self.is_connected = True

    def jetstream(self) -> Any:
        return self.js

    def new_inbox(self) -> str:
        return "_INBOX.fake"

    async def subscribe(self, subject: str, **_: Any) -> Any:
        """A subscription that never delivers (pullers made, never asked)."""
        return object()


class FakeClock:
    """A monotonic clock that moves only when a test sets ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
