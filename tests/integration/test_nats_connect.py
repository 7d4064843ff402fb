"""api/messaging.connect_nats against a real nats-server: an outage is logged once, not
at every reconnect attempt, and a process closing its own connection logs nothing."""

from __future__ import annotations

import asyncio
import logging

from api.messaging import connect_nats
from workers.nats_server import EmbeddedNatsServer


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_outage_is_logged_once_and_our_own_close_not_at_all(
    nats_server: EmbeddedNatsServer,
) -> None:
    kept = Kept()
    logger = logging.getLogger("api.messaging")
    logger.addHandler(kept)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        nc = await connect_nats(nats_server.url, name="closing")
        await nc.close()
        assert kept.records == []  # our own shutdown is no outage

        nc = await connect_nats(nats_server.url, name="outage")
        nats_server.stop()
        await asyncio.sleep(5.0)  # reconnect attempts fail every 2 s meanwhile
        warnings = [r for r in kept.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in kept.records]
        assert "NATS (outage) unreachable" in warnings[0].getMessage()
        await nc.close()
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
