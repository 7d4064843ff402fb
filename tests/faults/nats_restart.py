"""A nats-server a fault test can kill and start again on the same address and store
(tests/faults/conftest.py: the ``nats`` fixture, and ``stack`` on it in modules marked
``restartable_nats``)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.nats_cluster import _free_ports
from workers.nats_server import _die_with_parent, find_binary


class RestartableNats:
    """One nats-server with ``-js`` on fixed ports and one store: killed (SIGKILL) and
    started again on the same address and store, as an operator's restart would."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port, self.monitor_port = _free_ports(2)
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        args = [
            str(find_binary()), "-js", "-a", "127.0.0.1", "-p", str(self.port),
            "-m", str(self.monitor_port), "-sd", str(self.store),
            "-l", str(self.store / "nats-server.log"),
        ]  # fmt: skip
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=preexec)
        deadline = time.monotonic() + timeout
        healthz = f"http://127.0.0.1:{self.monitor_port}/healthz"
        while True:  # JetStream ready: its streams recovered from the store
            try:
                with urllib.request.urlopen(healthz, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            assert self._process.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server not healthy in time"
            time.sleep(0.05)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
