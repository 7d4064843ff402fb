"""The private parts of pinned libraries that our shortcuts use, checked against the
installed versions: nats-py's (workers/bridge/nats_wire.py) and psycopg_pool's queue of
waiting requests (commands/db_pool.py). A failure names the installed version: upgrade
the shortcut with the library, or switch it off (docs/operations.md#fast-paths)."""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.protocol.parser import Parser
from psycopg_pool.pool import WaitingClient

from commands.db_monitor import DatabaseUnavailable
from commands.db_pool import GuardedPool
from workers.bridge import nats_wire

ROOT = Path(__file__).parents[2]
NATS = f"nats-py {metadata.version('nats-py')}"
POOL = f"psycopg-pool {metadata.version('psycopg-pool')}"


def pinned(distribution: str) -> str | None:
    """The exact version pyproject.toml pins ``distribution`` to (None: not pinned)."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        match = re.fullmatch(rf"{re.escape(distribution)}\s*==\s*([\w.]+)", requirement.strip())
        if match:
            return match.group(1)
    return None


@pytest.mark.parametrize("distribution", ["nats-py", "psycopg-pool"])
def test_the_installed_version_is_the_pinned_one(distribution: str) -> None:
    installed = metadata.version(distribution)
    assert pinned(distribution) == installed, (
        f"{distribution} {installed} is installed; pyproject.toml pins {pinned(distribution)}"
    )


# name -> its parameters after self, as nats_wire calls them
CLIENT_COROUTINES = {
    "_send_command": ["cmd", "priority"],
    "_flush_pending": ["force_flush"],
    "_process_msg": ["sid", "subject", "reply", "data", "headers"],
}


@pytest.mark.parametrize("name", CLIENT_COROUTINES)
def test_the_client_coroutines_the_wire_writer_calls(name: str) -> None:
    method = getattr(Client, name, None)
    assert method is not None, f"{NATS}: Client.{name} is gone"
    assert inspect.iscoroutinefunction(method), f"{NATS}: Client.{name} is not a coroutine"
    parameters = list(inspect.signature(method).parameters)[1:]
    assert parameters == CLIENT_COROUTINES[name], f"{NATS}: Client.{name}{parameters}"


def test_a_client_has_the_state_the_wire_writer_uses() -> None:
    client = Client()
    assert hasattr(client, "_flush_queue"), f"{NATS}: Client._flush_queue is gone"
    assert client._flush_queue is None  # set by connect: an asyncio.Queue of futures
    stats = getattr(client, "stats", None)
    assert isinstance(stats, dict), f"{NATS}: Client.stats is not a dict"
    assert {"in_msgs", "in_bytes", "out_msgs", "out_bytes"} <= set(stats), f"{NATS}: {stats}"
    for public in ("is_connected", "is_draining_pubs", "max_payload", "new_inbox"):
        assert hasattr(client, public), f"{NATS}: Client.{public} is gone"
    assert nats_wire.available(client), f"{NATS}: nats_wire.available() is False"


def test_the_parser_looks_up_process_msg_for_every_message() -> None:
    """``tap`` replaces the client's ``_process_msg``: the parser must call it through
    the client each time, not hold a reference taken at connect."""
    source = inspect.getsource(Parser)
    assert "await self.nc._process_msg(sid, subject, reply, payload, hdr)" in source, (
        f"{NATS}: the parser no longer calls self.nc._process_msg(...) per message"
    )


def test_a_subscription_keeps_its_id() -> None:
    subscription = Subscription(conn=None, id=7)
    assert getattr(subscription, "_id", None) == 7, f"{NATS}: Subscription._id is gone"


def test_the_pool_s_queue_of_waiting_requests() -> None:
    pool = GuardedPool("", open=False)
    waiting = getattr(pool, "_waiting", None)
    assert waiting is not None, f"{POOL}: ConnectionPool._waiting is gone"
    assert hasattr(waiting, "clear") and hasattr(pool, "_lock"), f"{POOL}: {type(waiting)}"
    client: WaitingClient[Any] = WaitingClient()
    waiting.append(client)
    pool.sever_in_use()  # the database is gone: the waiting request fails now
    with pytest.raises(DatabaseUnavailable):
        client.wait(0.01)
    assert not waiting
