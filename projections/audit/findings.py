"""What ``taskexec verify`` reports: one ``Problem`` per finding, and the ``VerifyReport``
that adds them up (projections/audit/verify.py runs the verification)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One finding: which aggregate, which event version, what is wrong."""

    kind: str  # task | definition | apikey | unknown
    aggregate: str  # the task id, definition id or key id
    version: int | None
    message: str

    def __str__(self) -> str:
        where = f" version {self.version}" if self.version is not None else ""
        return f"{self.kind} {self.aggregate}{where}: {self.message}"


@dataclass
class VerifyReport:
    events: int = 0
    aggregates: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    read_model_position: int = 0
    head: int = 0
    compared: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        kinds = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.aggregates.items()))
        compared = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.compared.items()))
        if self.ok:
            return (
                f"OK: {self.events:,} events of {sum(self.aggregates.values()):,} aggregates "
                f"({kinds or 'none'}): every hash chain intact; read model matches the "
                f"replay ({compared or 'nothing'} compared, read model at position "
                f"{self.read_model_position:,} of {self.head:,})"
            )
        return (
            f"FAILED: {self.problem_count:,} problem(s) in {self.events:,} events of "
            f"{sum(self.aggregates.values()):,} aggregates ({kinds or 'none'})"
        )


class ReadModelMissing(RuntimeError):
    """The read-model tables do not exist (no ``serve`` or rebuild has run yet)."""
