"""Types shared by the runner, the rebuild and the prefetcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ReadLog = Callable[[int, int], list[tuple[int, Any]]]
