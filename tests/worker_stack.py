"""The app over a real runtime with a real worker beside it, for integration tests whose
handlers and definitions are their own (written under ``tmp_path``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from domain.executor_pool import DEFAULT_POOL
from tests.security_support import new_key
from workers.executor import Worker


@asynccontextmanager
async def app_with_worker(
    *,
    database_url: str,
    nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handlers: Mapping[str, str],
    definitions: Iterable[dict[str, Any]],
    concurrency: int = 4,
    pools: Sequence[str] = (DEFAULT_POOL,),
    worker_options: Mapping[str, Any] | None = None,
    code: Path | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[AsyncTestClient[Any], Runtime]]:
    """``handlers``: module name -> source, importable by the worker (written to ``code``,
    default ``tmp_path/code``); ``definitions``: the task definitions the runtime loads;
    ``pools``: the worker's executor pools; ``worker_options``: more Worker arguments
    (``capacity``, ``sandbox``); ``overrides``: more Settings fields. Yields a client
    holding an all-permission key (rate limits off) and the runtime; the worker is
    stopped and its connection closed."""
    code = code or tmp_path / "code"
    code.mkdir(exist_ok=True)
    for module, source in handlers.items():
        (code / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(code))
    folder = tmp_path / "definitions"
    folder.mkdir()
    for doc in definitions:
        (folder / f"{doc['id']}.json").write_text(json.dumps(doc))
    settings = Settings(
        database_url=database_url,
        definitions_dir=folder,
        var_dir=tmp_path,
        rate_limit="off",
        rate_limit_bulk="off",
        **overrides,
    )
    runtime = await asyncio.to_thread(Runtime.open, settings)
    nc = await nats.connect(nats_url)
    worker = Worker(
        nc, worker_id="w", concurrency=concurrency, pools=pools, **(worker_options or {})
    )
    running = asyncio.create_task(worker.run())
    try:
        async with AsyncTestClient(app=create_app(runtime, nats_url)) as client:
            client.headers["X-API-Key"] = await asyncio.to_thread(new_key, runtime)
            yield client, runtime
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await nc.close()
