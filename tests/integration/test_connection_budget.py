"""One ``taskexec serve`` holds at most ``TASKEXEC_DB_POOL_SIZE`` PostgreSQL connections
(8 by default), counted in ``pg_stat_activity`` while it is under load: submits, bulk
submits, reads, worker reports, the relay, the projection, shared rate limits.

The serve's own connections are told from everyone else's (other suites share the
server) by their client ports: the sockets the serve process holds, from /proc.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from commands.persistence import APPLICATION_NAME, DatabaseConfig
from tests.conftest import EXAMPLE_INPUT
from tests.faults.stack import Stack
from workers.nats_server import EmbeddedNatsServer

LOAD_S = 6.0
ESTABLISHED = "01"


def client_ports(pid: int, server_port: int) -> set[int]:
    """Local ports of ``pid``'s established TCP connections to ``server_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            to_server = int(remote.rsplit(":", 1)[1], 16) == server_port
            if inode in inodes and state == ESTABLISHED and to_server:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def count_in_pg_stat_activity(conninfo: str, ports: set[int]) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE client_port = ANY(%s) AND application_name = %s",
            (list(ports), APPLICATION_NAME),
        ).fetchone()
    return int(row[0]) if row else 0


def load(base: str, key: str, stop: threading.Event) -> int:
    """Submits, bulk submits and reads from 8 threads until ``stop``; requests made."""
    made = [0]

    def one(n: int) -> None:
        with httpx.Client(timeout=10.0, headers={"X-API-Key": key}) as client:
            while not stop.is_set():
                task = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
                if n % 4 == 0:
                    client.post(f"{base}/api/v1/tasks/bulk", json={"tasks": [task] * 50})
                elif n % 4 == 1:
                    client.get(f"{base}/api/v1/tasks", params={"limit": 20})
                else:
                    created = client.post(f"{base}/api/v1/tasks", json=task)
                    if created.status_code == 201:
                        client.get(f"{base}/api/v1/tasks/{created.json()['id']}")
                made[0] += 1

    with ThreadPoolExecutor(8) as pool:
        for n in range(8):
            pool.submit(one, n)
    return made[0]


@pytest.fixture
def stack(postgres_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(postgres_url, nats_server.url, tmp_path)
    yield running
    running.stop_all()


@pytest.mark.parametrize("pool_size", [None, 6])
def test_serve_holds_at_most_its_connection_budget_under_load(
    stack: Stack, pool_size: int | None
) -> None:
    env = {"TASKEXEC_RATE_LIMIT": "100000/minute", "TASKEXEC_RATE_LIMIT_BULK": "100000/minute"}
    if pool_size is not None:
        env["TASKEXEC_DB_POOL_SIZE"] = str(pool_size)
    budget = pool_size or 8
    base = stack.serve("serve", env=env)
    stack.worker("w1")
    pid = stack.processes["serve"].pid
    config = DatabaseConfig.from_url(stack.database_url)
    server_port = urlsplit(stack.database_url).port or 5432

    stop = threading.Event()
    made: list[int] = []
    loader = threading.Thread(target=lambda: made.append(load(base, stack.key, stop)))
    loader.start()
    held, counted = [], []
    deadline = time.monotonic() + LOAD_S
    while time.monotonic() < deadline:
        ports = client_ports(pid, server_port)
        held.append(len(ports))
        counted.append(count_in_pg_stat_activity(config.conninfo(), ports))
        time.sleep(0.1)
    stop.set()
    loader.join(30)

    line = next(
        (x for x in (stack.dir / "serve.log").read_text().splitlines() if "connections:" in x),
        "",
    )
    print(
        f"\nbudget {budget}: held at most {max(held)} sockets, {max(counted)} in "
        f"pg_stat_activity ({len(held)} samples, {made[0] if made else 0} requests); "
        f"{line.split(' - ')[-1]}"
    )
    assert made and made[0] > 50, stack.logs()
    assert max(counted) <= budget, (counted, stack.logs())
    assert max(held) <= budget, held
    assert max(counted) >= 3  # the count is of the serve's connections, not nothing
