"""The chain's canonical encoding, fast: msgspec's sorted JSON encoder.

For plain JSON values it writes byte for byte what ``domain.chain.encode`` (the standard
library) writes, except floats with an exponent (msgspec ``1e16``, Python ``1e+16``) and
lone surrogates (msgspec refuses them): ``domain.chain`` only hands it documents without
those, and falls back to the standard library when it raises. Several times faster: the
hash of every new event is computed with it. tests/unit/test_chain.py holds the proof.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain.chain import use_fast_encoder

_encoder = msgspec.json.Encoder(order="sorted")


def encode(document: Any) -> bytes:
    """``domain.chain.encode(document)`` for documents whose floats are tame."""
    return _encoder.encode(document)


def install() -> None:
    """Seal new events with :func:`encode` (idempotent; called by the services)."""
    use_fast_encoder(encode)
