"""The TASK_CANCELLED bucket on a real nats-server: direct gets, also for an old bucket."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError

from workers.nats_server import EmbeddedNatsServer
from workers.protocol import CANCEL_BUCKET, cancel_subject
from workers.streams import ensure_streams


@pytest.mark.parametrize("existing", [False, True])
async def test_workers_look_up_cancel_markers_with_direct_gets(
    nats_server: EmbeddedNatsServer, existing: bool
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        if existing:  # made by an earlier version, without direct gets
            await js.create_key_value(KeyValueConfig(bucket=CANCEL_BUCKET, history=1))
        await ensure_streams(js)
        info = await js.stream_info(f"KV_{CANCEL_BUCKET}")
        assert info.config.allow_direct
        bucket = await js.key_value(CANCEL_BUCKET)
        with pytest.raises(KeyNotFoundError):
            await bucket.get("not-cancelled")
        await js.publish(cancel_subject("t-1"), b'{"force": true}')
        assert (await bucket.get("t-1")).value == b'{"force": true}'
        await ensure_streams(js)  # again, as every process does at start: nothing changes
        assert (await bucket.get("t-1")).value == b'{"force": true}'
    finally:
        await nc.close()
