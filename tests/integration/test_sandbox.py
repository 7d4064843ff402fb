"""Security levels and memory limits, proved from inside handlers run by a real worker
through the real service (SQLite and PostgreSQL): what a ``HIGH`` attempt can see and
what it cannot, ``MEDIUM`` in a child process, ``memory`` as a hard limit in a child."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer
from workers.sandbox import RunAs, Sandbox

TASKS = "/api/v1/tasks"
SECRET = "SANDBOX_TEST_SECRET"
ALLOWED = "SANDBOX_TEST_ALLOWED"
HANDLERS = {
    "sandbox_handlers": textwrap.dedent(
        """
        import os

        def inspect(payload, context):
            seen = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
            seen.update(pid=os.getpid(), cwd=os.getcwd(), listing=os.listdir("."))
            seen.update(secret=os.environ.get("SANDBOX_TEST_SECRET"))
            seen.update(allowed=os.environ.get("SANDBOX_TEST_ALLOWED"))
            seen.update(home=os.environ.get("HOME"), names=sorted(os.environ))
            try:  # the environment it started with (unreadable after a change of user)
                with open("/proc/self/environ", "rb") as environ:
                    seen["environ_has_secret"] = b"SANDBOX_TEST_SECRET" in environ.read()
            except PermissionError:
                seen["environ_has_secret"] = "unreadable"
            try:
                with open(payload["root_only"]) as private:
                    seen["root_only"] = private.read()
            except PermissionError:
                seen["root_only"] = "denied"
            with open("scratch.txt", "w") as scratch:  # its own directory is writable
                scratch.write("x")
            seen["wrote"] = os.listdir(".")
            return seen

        def pid(payload, context):
            return {"pid": os.getpid(), "secret": os.environ.get("SANDBOX_TEST_SECRET")}

        def nap(payload, context):
            import time
            time.sleep(payload["seconds"])
            return {"slept": payload["seconds"]}

        def nap_here(payload, context):
            import time
            with open(os.path.join(payload["records"], context.task_id), "w") as out:
                out.write(os.getcwd())
            time.sleep(payload["seconds"])

        def hog(payload, context):
            held = bytearray(payload["mib"] * 1024 * 1024)
            return {"held": len(held)}
        """
    )
}


def definition(
    ident: str, handler: str, retryPolicy: dict[str, Any] | None = None, **config: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "name": ident,
        "type": "AUTOMATED",
        "version": "1",
        "timeout": 20_000,
        "retryPolicy": retryPolicy or {"maxRetries": 2, "retryInterval": 0, "backoffMultiplier": 1},
        "executionConfig": {"handler": f"sandbox_handlers:{handler}", **config},
    }


MEDIUM, HIGH = {"securityLevel": "MEDIUM"}, {"securityLevel": "HIGH"}
LIMIT, CAP = {"memory": "128Mi"}, {"timeoutSeconds": 1}  # a cap under the 20 s timeout
NO_RETRY = {"maxRetries": 0, "retryInterval": 0, "backoffMultiplier": 1}
DEFINITIONS = [
    definition("high", "inspect", securityContext={**HIGH, "allowEnv": [ALLOWED]}),
    definition("medium", "pid", securityContext=MEDIUM),
    definition("low", "pid"),
    definition("hog-medium", "hog", securityContext=MEDIUM, resourceRequirements=LIMIT),
    definition("hog-process", "hog", isolation="process", resourceRequirements=LIMIT),
    definition("hog-thread", "hog", resourceRequirements=LIMIT),
    definition("capped", "nap", securityContext=MEDIUM, resourceRequirements=CAP),
    definition("high-killed", "nap_here", NO_RETRY, securityContext=HIGH, resourceRequirements=CAP),
]
Api = AsyncTestClient[Any]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may read (pytest's own are root's alone): the handlers'
    code and the attempts' directories, so that the run-as user reaches them."""
    path = Path(tempfile.mkdtemp(prefix="taskexec-sandbox-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_nobody() -> RunAs:
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    return RunAs.named("nobody")


@asynccontextmanager
async def stack(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    public_dir: Path,
    sandbox: Sandbox,
) -> AsyncIterator[Api]:
    """The service and a worker holding a secret in its environment."""
    monkeypatch.setenv(SECRET, "s3cret")
    monkeypatch.setenv(ALLOWED, "shared")
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers=HANDLERS,
        definitions=DEFINITIONS,
        code=public_dir / "code",
        worker_options={"sandbox": sandbox},
    ) as (client, _):
        yield client


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    public_dir: Path,
) -> AsyncIterator[Api]:
    """A worker whose HIGH attempts run as ``nobody``."""
    sandbox = Sandbox(public_dir / "attempts", run_as_nobody())
    async with stack(database_url, nats_server, tmp_path, monkeypatch, public_dir, sandbox) as c:
        yield c


@pytest.fixture
async def root_api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    public_dir: Path,
) -> AsyncIterator[Api]:
    """A worker without ``--run-as``."""
    sandbox = Sandbox(public_dir / "attempts")
    async with stack(database_url, nats_server, tmp_path, monkeypatch, public_dir, sandbox) as c:
        yield c


async def finished(client: Api, definition_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    created = await client.post(TASKS, json={"taskDefinitionId": definition_id, "input": payload})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    for _ in range(600):
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] in ("COMPLETED", "FAILED", "TIMED_OUT"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never ended: {body}")


async def test_a_high_attempt_sees_only_what_its_definition_allows(
    api: Api, public_dir: Path
) -> None:
    root_only = public_dir / "root-only.txt"
    root_only.write_text("for root")
    root_only.chmod(0o600)
    nobody = pwd.getpwnam("nobody")

    body = await finished(api, "high", {"root_only": str(root_only)})

    assert body["status"] == "COMPLETED", body["error"]
    seen = body["output"]
    assert (seen["uid"], seen["gid"], seen["groups"]) == (nobody.pw_uid, nobody.pw_gid, [])
    assert seen["pid"] != os.getpid()
    assert seen["root_only"] == "denied"
    assert seen["secret"] is None and seen["environ_has_secret"] is not True
    assert seen["allowed"] == "shared"  # named in securityContext.allowEnv
    assert set(seen["names"]) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", ALLOWED}
    cwd = Path(seen["cwd"])
    assert seen["home"] == seen["cwd"] and cwd.is_relative_to(public_dir / "attempts")
    assert seen["listing"] == [] and seen["wrote"] == ["scratch.txt"]
    assert not await asyncio.to_thread(cwd.exists)  # removed once the attempt ended


async def test_a_high_attempt_never_runs_as_root(root_api: Api) -> None:
    if os.geteuid() != 0:
        pytest.skip("the rule is for a worker running as root")
    body = await finished(root_api, "high", {"root_only": "/nonexistent"})

    assert body["status"] == "FAILED"
    assert body["error"]["type"] == "RUN_AS_REQUIRED"
    assert "--run-as" in body["error"]["message"]
    assert body["attempts"] == 1  # not retried: no attempt here would be different


async def test_medium_runs_in_a_child_process_and_low_in_the_worker(api: Api) -> None:
    medium = await finished(api, "medium", {})
    low = await finished(api, "low", {})

    assert medium["status"] == low["status"] == "COMPLETED"
    assert medium["output"]["pid"] != os.getpid()
    assert medium["output"]["secret"] == "s3cret"  # MEDIUM keeps the worker's environment
    assert low["output"]["pid"] == os.getpid()


@pytest.mark.parametrize("ident", ["hog-medium", "hog-process"])
async def test_an_attempt_over_its_memory_limit_fails_and_is_retried(api: Api, ident: str) -> None:
    body = await finished(api, ident, {"mib": 512})

    assert body["status"] == "FAILED"
    assert body["error"]["type"] == "MEMORY_LIMIT_EXCEEDED"
    assert str(128 * 1024 * 1024) in body["error"]["message"]
    assert body["attempts"] == 3  # retried by its policy: maxRetries 2


@pytest.mark.parametrize("ident", ["hog-medium", "hog-process"])
async def test_an_attempt_within_its_memory_limit_completes(api: Api, ident: str) -> None:
    body = await finished(api, ident, {"mib": 16})

    assert body["status"] == "COMPLETED", body["error"]
    assert body["output"] == {"held": 16 * 1024 * 1024}


async def test_memory_is_only_a_request_for_an_attempt_in_the_worker(api: Api) -> None:
    body = await finished(api, "hog-thread", {"mib": 192})

    assert body["status"] == "COMPLETED", body["error"]
    assert body["output"] == {"held": 192 * 1024 * 1024}


async def test_the_lower_of_timeout_and_timeout_seconds_wins(api: Api) -> None:
    body = await finished(api, "capped", {"seconds": 30})

    assert body["status"] == "TIMED_OUT"
    assert (body["error"]["type"], body["attempts"]) == ("TIMEOUT", 3)  # retried, as ever
    assert "1000 ms" in body["error"]["message"]


async def test_a_high_attempt_killed_at_its_timeout_leaves_no_directory(
    api: Api, public_dir: Path
) -> None:
    records = public_dir / "records"
    records.mkdir()
    records.chmod(0o777)  # the run-as user writes there

    body = await finished(api, "high-killed", {"records": str(records), "seconds": 30})

    assert (body["status"], body["error"]["type"]) == ("TIMED_OUT", "TIMEOUT")
    cwd = Path((records / body["id"]).read_text())
    assert cwd.is_relative_to(public_dir / "attempts")
    assert not await asyncio.to_thread(cwd.exists)  # the child was killed, then it went
