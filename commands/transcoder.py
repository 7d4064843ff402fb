"""How events are stored: JSON via msgspec, user payloads verbatim.

The library's JSONTranscoder reads any object ``{"_type_": …, "_data_": …}`` back as a
typed value, including objects inside a user's task input or a handler's output: one
request could store an event that no longer decodes, or comes back changed. Task events
hold only JSON values plus the library's own ``timestamp``, so that is the one field
typed on the way back. msgspec is also an order of magnitude faster than stdlib json
for replays and rebuilds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.persistence import Transcoder


class PayloadSafeTranscoder(Transcoder):
    """Encodes event state as JSON; decodes it with ``timestamp`` as a datetime."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        state = self._decoder.decode(data)
        timestamp = state.get("timestamp")
        if isinstance(timestamp, str):
            state["timestamp"] = datetime.fromisoformat(timestamp)
        return state
