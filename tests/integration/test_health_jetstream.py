"""``GET /health`` asks JetStream, not just the TCP connection (api/health.py): ready
(200) while the streams answer with a leader; 503 within seconds when the server is
gone, and when a cluster has lost its quorum although the connection to the surviving
node is up. Real nats-servers (one, and a 3-node cluster with 3 replicas); the database
is a SQLite file (what is under test is the NATS check)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from nats.aio.msg import Msg

from api.health import JetStreamHealth
from api.http.app import create_app
from api.messaging import connect_nats
from api.runtime import Runtime
from api.settings import Settings
from tests.nats_cluster import NatsCluster
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import RESULTS_STREAM, WORK_STREAM
from workers.streams import ensure_streams

DETECT_BOUND_S = 5.0  # a probe: 1 s timeout, answers kept 1 s
# A stream leader that survives notices it lost its quorum only after Raft's lost-quorum
# interval (seconds): until then it still names itself leader.
QUORUM_LOSS_BOUND_S = 25.0
RECOVER_BOUND_S = 40.0  # a node back: Raft elections (4-9 s each, two rounds at worst)


def runtime(tmp_path: Path, replicas: int = 1) -> Runtime:
    database = f"sqlite:///{tmp_path / 'health.db'}"
    return Runtime.open(Settings(database_url=database, var_dir=tmp_path, nats_replicas=replicas))


def wait_for_status(client: TestClient[Any], status: int, within_s: float) -> dict[str, Any]:
    """Probe /health until it answers ``status``; its body (fails after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while True:
        response = client.get("/health")
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, f"not {status} in {within_s} s: {response.text}"
        time.sleep(0.2)


class Changes(logging.Handler):
    """What api.health logs (level, message), from now until ``close()``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []
        self._logger = logging.getLogger("api.health")
        self._level, self._disabled = self._logger.level, self._logger.disabled
        self._logger.setLevel(logging.INFO)
        self._logger.disabled = False
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.levelname, record.getMessage()))

    def close(self) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        self._logger.disabled = self._disabled
        super().close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "cluster") as running:
        yield running


def test_ready_while_jetstream_serves_the_streams(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    with TestClient(create_app(runtime(tmp_path), nats_server.url)) as client:
        response = client.get("/health")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ok",
            "checks": {"database": True, "projection": True, "nats": True},
        }
        for _ in range(20):  # probed often: answered from the cache, still ready
            assert client.get("/health").status_code == 200


def test_unavailable_within_seconds_once_the_server_is_gone(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    with TestClient(create_app(runtime(tmp_path), nats_server.url)) as client:
        assert client.get("/health").status_code == 200
        stopped_at = time.monotonic()
        nats_server.stop()
        body = wait_for_status(client, 503, DETECT_BOUND_S)
        print(f"\n503 after {time.monotonic() - stopped_at:.2f} s")
        assert body == {
            "status": "unavailable",
            "checks": {"database": True, "projection": True, "nats": False},
        }


def test_unavailable_without_quorum_although_connected(
    tmp_path: Path, cluster: NatsCluster
) -> None:
    """Two nodes of three killed: the survivor keeps the TCP connection and answers
    stream info, but the R3 streams have no leader (no quorum): not ready. One node
    back: a quorum again, ready again."""
    the_runtime = runtime(tmp_path, replicas=3)
    with TestClient(create_app(the_runtime, cluster.url)) as client:
        assert client.get("/health").status_code == 200
        changes = Changes()  # after the start: Litestar configures logging then
        assert the_runtime.bridge is not None
        nc = the_runtime.bridge.nc
        assert nc is not None and nc.connected_url is not None
        port = nc.connected_url.port
        assert port is not None
        survivor = cluster.client_ports.index(port)
        others = [i for i in range(cluster.size) if i != survivor]
        killed_at = time.monotonic()
        for i in others:
            cluster.kill(i)

        body = wait_for_status(client, 503, QUORUM_LOSS_BOUND_S)
        detected = time.monotonic() - killed_at
        assert body["checks"] == {"database": True, "projection": True, "nats": False}
        assert the_runtime.nats_connected  # the connection to the survivor is up
        assert nc.connected_url is not None and nc.connected_url.port == port
        for _ in range(5):  # and it stays unavailable (not a blip)
            time.sleep(0.3)
            assert client.get("/health").status_code == 503

        restarted_at = time.monotonic()
        cluster.start(others[0])
        wait_for_status(client, 200, RECOVER_BOUND_S)
        print(
            f"\n503 {detected:.1f} s after the kills; "
            f"200 {time.monotonic() - restarted_at:.1f} s after a node came back"
        )
    changes.close()
    assert [level for level, _ in changes.seen] == ["WARNING", "INFO"], changes.seen  # once each


async def test_probes_within_a_second_share_one_check(nats_server: EmbeddedNatsServer) -> None:
    """Load balancers probe often: one stream-info request per stream per second, however
    many probes (concurrent ones wait for the check in flight)."""
    nc = await connect_nats(nats_server.url, name="test-health")
    spy = await connect_nats(nats_server.url, name="test-spy")
    try:
        await ensure_streams(nc.jetstream())
        asked: list[str] = []

        async def seen(msg: Msg) -> None:
            asked.append(msg.subject)

        await spy.subscribe("$JS.API.STREAM.INFO.>", cb=seen)
        await spy.flush()
        clock = [0.0]
        checker = JetStreamHealth(nc, clock=lambda: clock[0])
        answers = await asyncio.gather(*(checker.ready() for _ in range(20)))
        for _ in range(20):
            clock[0] += 0.04  # 0.8 s of probes: still the same answer
            answers.append(await checker.ready())
        await nc.flush()
        await spy.flush()
        await asyncio.sleep(0.1)  # the spy's callbacks run
        assert all(answers)
        assert sorted(asked) == [f"$JS.API.STREAM.INFO.{s}" for s in (RESULTS_STREAM, WORK_STREAM)]
        clock[0] += 0.5  # past the second: checked again
        assert await checker.ready()
        await nc.flush()
        await spy.flush()
        await asyncio.sleep(0.1)  # the spy's callbacks run
        assert len(asked) == 4
    finally:
        await spy.close()
        await nc.close()
