"""Errors the write side reports to its callers (the API maps them to the spec's envelope)."""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """A command was refused; nothing was recorded."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(CommandError):
    code = "NOT_FOUND"


class ValidationFailed(CommandError):
    code = "VALIDATION_ERROR"


class Conflict(CommandError):
    code = "CONFLICT"


class TooLarge(CommandError):
    """The request holds more than the service can pass on (the broker's message limit)."""

    code = "PAYLOAD_TOO_LARGE"
