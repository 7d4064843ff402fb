"""commands/fast_paths.py: the switches of the shortcuts, carried through eventsourcing's
environment to TaskService (never read from os.environ); a task cache switched off keeps
nothing."""

from __future__ import annotations

import pytest

from commands.catalog import DefinitionCatalog
from commands.fast_paths import ENV_KEY, FastPaths
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from commands.task_cache import TaskCache
from tests.unit.test_task_cache import committed


def test_every_shortcut_is_on_by_default() -> None:
    assert FastPaths().off() == ()
    assert FastPaths().to_eventsourcing_env() == {}  # today's environment, unchanged
    assert FastPaths.from_eventsourcing_env({}) == FastPaths()


@pytest.mark.parametrize("name", FastPaths.names())
def test_each_switch_goes_through_the_environment_alone(name: str) -> None:
    fast = FastPaths(**{name: False})
    env = fast.to_eventsourcing_env()
    assert env == {ENV_KEY: name}
    assert FastPaths.from_eventsourcing_env(env) == fast


def test_all_off_round_trip() -> None:
    fast = FastPaths(**dict.fromkeys(FastPaths.names(), False))
    assert FastPaths.from_eventsourcing_env(fast.to_eventsourcing_env()) == fast


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fast paths"):
        FastPaths.from_eventsourcing_env({ENV_KEY: "task_cache,warp_drive"})


def test_a_service_takes_its_switches_from_the_environment_it_is_given(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eventsourcing merges os.environ into an Application's environment: the switches
    are read from the given one only."""
    monkeypatch.setenv(ENV_KEY, "task_cache,recent_events")
    config = DatabaseConfig.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    try:
        assert service.fast_paths == FastPaths()
        assert service.task_cache.enabled and service.recent is not None
    finally:
        service.close()
    plain = FastPaths(task_cache=False, recent_events=False)
    service = TaskService(config.eventsourcing_env(fast_paths=plain), DefinitionCatalog.load())
    try:
        assert service.fast_paths == plain
        assert not service.task_cache.enabled and service.recent is None
    finally:
        service.close()


def test_a_task_cache_switched_off_keeps_nothing() -> None:
    cache = TaskCache(enabled=False)
    task = committed()
    cache.remember([task])
    assert len(cache) == 0
    assert cache.take([task.id]) == {}
    cache.forget([task.id])
    cache.refused()
    cache.remember([task])
    assert len(cache) == 0 and (cache.hits, cache.misses) == (0, 0)
