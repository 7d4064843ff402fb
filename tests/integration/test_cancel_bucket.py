"""The TASK_CANCELLED bucket on a real nats-server: direct gets, also for an old bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError

from workers.cancel_markers import CancelMarkers
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


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[Any]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def _markers_on(nc: Any, **options: Any) -> tuple[CancelMarkers, Any]:
    js = nc.jetstream()
    await ensure_streams(js)
    bucket = await js.key_value(CANCEL_BUCKET)
    return CancelMarkers(nc, bucket, **options), js


async def test_one_lookup_answers_for_a_whole_batch(nc: Any) -> None:
    markers, js = await _markers_on(nc)
    ids = [f"t-{i}" for i in range(600)]  # more than one request's worth
    for task_id in ids[::7]:
        await js.publish(cancel_subject(task_id), b"{}")
    bucket = await js.key_value(CANCEL_BUCKET)
    await bucket.delete("t-7")  # a deleted marker does not count
    await bucket.purge("t-14")  # nor a purged one
    assert await markers.marked([]) == set()
    assert await markers.marked(["t-1", "t-2"]) == set()
    assert await markers.marked(ids) == set(ids[::7]) - {"t-7", "t-14"}
    assert markers.batched  # nats-server >= 2.11 answers batched direct gets
    await markers.close()


async def test_an_older_server_is_asked_one_key_at_a_time(nc: Any) -> None:
    # nats-server 2.9 answers a multi_last request with "408 Empty Request".
    async def old_server(msg: Any) -> None:
        await nc.publish(msg.reply, b"", headers={"Status": "408"})

    await nc.subscribe("test.old.direct.get", cb=old_server)
    markers, js = await _markers_on(nc, api_subject="test.old.direct.get")
    await js.publish(cancel_subject("t-2"), b"{}")
    assert await markers.marked(["t-1", "t-2", "t-3"]) == {"t-2"}
    assert not markers.batched
    assert await markers.marked(["t-2", "t-4"]) == {"t-2"}
    await markers.close()


@pytest.mark.parametrize("batched", [True, False])
async def test_markers_give_the_task_version_of_their_cancel(nc: Any, batched: bool) -> None:
    """What a worker compares with a requeued task's work (workers/admission.py)."""

    async def old_server(msg: Any) -> None:
        await nc.publish(msg.reply, b"", headers={"Status": "408"})

    options: dict[str, Any] = {}
    if not batched:
        await nc.subscribe("test.old.versions", cb=old_server)
        options["api_subject"] = "test.old.versions"
    markers, js = await _markers_on(nc, **options)
    await js.publish(cancel_subject("t-1"), b'{"force": false, "taskversion": 4}')
    await js.publish(cancel_subject("t-2"), b'{"force": true}')  # made before versions
    await js.publish(cancel_subject("t-3"), b"not json")
    found = await markers.versions(["t-1", "t-2", "t-3", "t-4"])
    assert found == {"t-1": 4, "t-2": 0, "t-3": 0}
    assert markers.batched is batched
    await js.publish(cancel_subject("t-1"), b'{"force": false, "taskversion": 9}')  # again
    assert await markers.versions(["t-1"]) == {"t-1": 9}
    await markers.close()


async def test_no_answer_is_an_error_not_a_no(nc: Any) -> None:
    await nc.subscribe("test.silent", cb=_ignore)
    markers, _ = await _markers_on(nc, api_subject="test.silent", timeout_s=0.2)
    with pytest.raises(TimeoutError):
        await markers.marked(["t-1"])
    assert markers.batched  # silence says nothing about the server's version
    await markers.close()


async def _ignore(msg: Any) -> None:
    return None
