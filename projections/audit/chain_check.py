"""Checks one aggregate's hash chain (see domain/chain.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from commands import canonical
from domain.chain import GENESIS, encode, event_fields, hashed_document


def hash_matches(stored_hash: str, document: list[Any]) -> bool:
    """Whether ``document`` hashes to ``stored_hash`` under the canonical encoding.

    The fast encoding (commands/canonical.py) is tried first, whatever the floats: a
    match means its bytes are the canonical ones (SHA-256 is collision resistant); a
    mismatch is decided by the canonical encoder itself.
    """
    try:
        if hashlib.sha256(canonical.encode(document)).hexdigest() == stored_hash:
            return True
    except (TypeError, ValueError, UnicodeError):
        pass
    try:
        return hashlib.sha256(encode(document)).hexdigest() == stored_hash
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class ChainFault:
    """Something wrong with one aggregate's stored events."""

    version: int | None
    kind: str  # gap | missing-hash | altered | broken-link | undecodable
    message: str


@dataclass
class ChainLink:
    """What the chain check needs of one stored event."""

    version: int
    topic: str
    state: dict[str, Any] | None  # None: the stored bytes did not decode
    error: str = ""


def check_chain(originator_id: UUID | str, links: Sequence[ChainLink]) -> list[ChainFault]:
    """Check one aggregate's events, in version order: versions 1, 2, … without a gap;
    each event's hash recomputed from its content; each ``prev_hash`` equal to the
    previous event's hash (GENESIS for version 1)."""
    faults: list[ChainFault] = []
    text_id = str(originator_id)
    expected = 1
    previous: str | None = GENESIS
    for link in links:
        if link.version != expected:
            missing = (
                f"version {expected}"
                if link.version == expected + 1
                else f"versions {expected} to {link.version - 1}"
            )
            faults.append(ChainFault(link.version, "gap", f"{missing} missing (deleted?)"))
            previous = None  # nothing to link to
        expected = link.version + 1
        if link.state is None:
            faults.append(ChainFault(link.version, "undecodable", f"undecodable: {link.error}"))
            previous = None
            continue
        state = link.state
        stored_hash, prev_hash = state.get("hash"), state.get("prev_hash")
        if not isinstance(stored_hash, str) or not stored_hash or not isinstance(prev_hash, str):
            faults.append(ChainFault(link.version, "missing-hash", "no hash chain fields"))
            previous = None
            continue
        timestamp = state.get("timestamp")
        if not isinstance(timestamp, datetime) or not hash_matches(
            stored_hash,
            hashed_document(
                text_id, link.version, link.topic, timestamp, prev_hash, event_fields(state)
            ),
        ):
            faults.append(
                ChainFault(
                    link.version,
                    "altered",
                    "content does not match its hash (the stored event was altered)",
                )
            )
        if previous is not None and prev_hash != previous:
            faults.append(
                ChainFault(
                    link.version,
                    "broken-link",
                    f"prev_hash does not match the hash of version {link.version - 1}"
                    if link.version > 1
                    else "prev_hash of the first event is not the genesis value",
                )
            )
        previous = stored_hash
    return faults
