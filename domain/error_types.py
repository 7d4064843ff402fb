"""The error types of failures the service itself declares (a handler's own failures carry
the type it reported). They are stored in events and read by clients: never rename one."""

from __future__ import annotations

TIMEOUT = "TIMEOUT"  # error type of an attempt stopped at its timeout
OUTPUT_VALIDATION_ERROR = "OUTPUT_VALIDATION_ERROR"  # output broke the outputSchema
WORKER_LOST = "WORKER_LOST"  # no report came back from a started attempt in time
UNPUBLISHABLE = "UNPUBLISHABLE"  # the task's work is larger than the broker takes
UNDELIVERABLE = "UNDELIVERABLE"  # its work was delivered as often as allowed, never done
