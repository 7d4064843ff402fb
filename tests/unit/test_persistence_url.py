"""Unit tests of the database URL parser and the configuration it derives (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg.conninfo import conninfo_to_dict

from commands import pg_recorder
from commands.fast_paths import ENV_KEY, FastPaths
from commands.persistence import (
    APPLICATION_NAME,
    CONNECTION_OPTIONS,
    FAST_RECORDER_TOPIC,
    PLAIN_RECORDER_TOPIC,
    DatabaseConfig,
    DatabaseUrlError,
)


@pytest.fixture(autouse=True)
def _fixed_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "envuser")


# -- sqlite ---------------------------------------------------------------------------------


def test_sqlite_relative_path():
    config = DatabaseConfig.from_url("sqlite:///./var/x.db")
    assert config.kind == "sqlite"
    assert config.sqlite_path == Path("./var/x.db")
    assert not config.sqlite_path.is_absolute()
    assert config.is_postgres is False


def test_sqlite_relative_path_without_dot():
    config = DatabaseConfig.from_url("sqlite:///var/x.db")
    assert config.sqlite_path == Path("var/x.db")
    assert not config.sqlite_path.is_absolute()


def test_sqlite_absolute_path():
    config = DatabaseConfig.from_url("sqlite:////tmp/x.db")
    assert config.sqlite_path == Path("/tmp/x.db")
    assert config.sqlite_path.is_absolute()


def test_sqlite_path_is_percent_decoded():
    config = DatabaseConfig.from_url("sqlite:///./my%20dir/x.db")
    assert config.sqlite_path == Path("./my dir/x.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_sqlite_without_path_is_an_error(url: str):
    with pytest.raises(DatabaseUrlError, match="file path"):
        DatabaseConfig.from_url(url)


def test_sqlite_environment(tmp_path: Path):
    db = tmp_path / "sub" / "dir" / "x.db"
    config = DatabaseConfig.from_url(f"sqlite:///{db}")
    assert config.sqlite_path == db
    env = config.eventsourcing_env()
    assert env == {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(db),
        "SQLITE_LOCK_TIMEOUT": "10",
    }
    assert not any(key.startswith("POSTGRES_") for key in env)
    # the directory of the database file is made ready
    assert db.parent.is_dir()
    assert not db.exists()


# -- postgresql -----------------------------------------------------------------------------


def test_postgresql_url_with_everything():
    config = DatabaseConfig.from_url("postgresql://alice:s3cret@db.example:6543/tasks?schema=abc")
    assert config == DatabaseConfig(
        kind="postgres",
        host="db.example",
        port=6543,
        user="alice",
        password="s3cret",
        dbname="tasks",
        schema="abc",
    )
    assert config.is_postgres is True
    assert config.sqlite_path is None


def test_postgres_scheme_alias_and_defaults():
    config = DatabaseConfig.from_url("postgres:///tasks")
    assert config.kind == "postgres"
    assert config.host == "127.0.0.1"
    assert config.port == 5432
    assert config.user == ""
    assert config.password == ""
    assert config.dbname == "tasks"
    assert config.schema == ""


def test_user_and_password_are_percent_decoded():
    config = DatabaseConfig.from_url("postgresql://us%40er:p%3Aw%2Fd@h/db")
    assert config.user == "us@er"
    assert config.password == "p:w/d"


@pytest.mark.parametrize("schema", ["abc", "_x", "a1_b2", "a" * 63])
def test_valid_schema_names(schema: str):
    assert DatabaseConfig.from_url(f"postgresql://h/db?schema={schema}").schema == schema


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://h/db", "unsupported database URL scheme 'mysql'"),
        ("http://h/db", "unsupported"),
        ("/just/a/path.db", "unsupported"),
        ("", "unsupported"),
        ("postgresql://h", "needs a database name"),
        ("postgresql://h/", "needs a database name"),
        ("postgresql://u:p@h:5432/?schema=abc", "needs a database name"),
        ("postgresql://h/db?schema=Abc", "schema 'Abc' must match"),
        ("postgresql://h/db?schema=1abc", "must match"),
        ("postgresql://h/db?schema=a-b", "must match"),
        ("postgresql://h/db?schema=a%22b", "must match"),
        ("postgresql://h/db?schema=a;drop", "must match"),
        (f"postgresql://h/db?schema={'a' * 64}", "must match"),
        ("postgresql://h/db?schema=abc%0A", "must match"),
        ("postgresql://h:abc/db", "invalid port"),
        ("postgresql://h:99999/db", "invalid port"),
        ("sqlite:/x.db", "sqlite:///relative/path.db"),
        ("sqlite:x.db", "sqlite:///relative/path.db"),
        ("sqlite:///x.db?mode=ro", "sqlite:///relative/path.db"),
        ("sqlite:///var/", "needs a file path"),
    ],
)
def test_bad_urls(url: str, fragment: str):
    with pytest.raises(DatabaseUrlError) as info:
        DatabaseConfig.from_url(url)
    assert fragment in str(info.value)


def test_postgres_environment_with_schema():
    config = DatabaseConfig.from_url("postgresql://alice:pw@db.example:6543/tasks?schema=abc")
    env = config.eventsourcing_env(pool_size=4, pool_wait_s=1.5)
    conninfo = conninfo_to_dict(env.pop("TASKEXEC_PG_CONNINFO"))
    assert env == {
        "PERSISTENCE_MODULE": "commands.db_pool:Factory",
        "POSTGRES_DBNAME": "tasks",
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "alice",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "0",  # the pool size is the budget
        "TASKEXEC_PG_POOL_WAIT": "1.5",
        "PROCESS_RECORDER_TOPIC": "commands.pg_recorder:BinaryInsertProcessRecorder",
        "POSTGRES_SCHEMA": "abc",
    }
    assert conninfo == CONNECTION_OPTIONS  # named, bounded connect, keepalives


def test_postgres_environment_without_schema():
    env = DatabaseConfig.from_url("postgresql://h/tasks").eventsourcing_env()
    assert "POSTGRES_SCHEMA" not in env
    # 0 would make eventsourcing wait forever for its table lock
    assert int(env["POSTGRES_LOCK_TIMEOUT"]) > 0
    assert env["POSTGRES_POOL_SIZE"] == "10"
    assert env["POSTGRES_USER"] == "envuser"  # falls back to $USER
    assert all(isinstance(value, str) for value in env.values())


def test_postgres_environment_user_fallback_without_user_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("USER")
    env = DatabaseConfig.from_url("postgresql://h/tasks").eventsourcing_env()
    assert env["POSTGRES_USER"] == "postgres"


def test_conninfo_with_schema_sets_the_search_path():
    config = DatabaseConfig.from_url("postgresql://alice:pw@db.example:6543/tasks?schema=abc")
    conninfo = config.conninfo()
    assert "-csearch_path=abc" in conninfo
    assert conninfo_to_dict(conninfo) == {
        "host": "db.example",
        "port": "6543",
        "dbname": "tasks",
        "user": "alice",
        "password": "pw",
        **CONNECTION_OPTIONS,
        "options": "-csearch_path=abc",
    }
    assert CONNECTION_OPTIONS["application_name"] == APPLICATION_NAME


def test_conninfo_without_schema_or_password():
    conninfo = DatabaseConfig.from_url("postgresql://h/tasks").conninfo()
    assert "search_path" not in conninfo
    assert "options" not in conninfo
    parsed = conninfo_to_dict(conninfo)
    assert "password" not in parsed
    assert parsed["user"] == "envuser"
    assert parsed["application_name"] == "taskexec"


def test_conninfo_quotes_awkward_values():
    config = DatabaseConfig.from_url("postgresql://o%27brien:it%27s%20a%5Cb@h/db")
    assert config.user == "o'brien"
    assert config.password == "it's a\\b"
    parsed = conninfo_to_dict(config.conninfo())
    assert parsed["user"] == "o'brien"
    assert parsed["password"] == "it's a\\b"


def test_postgres_database_name_is_percent_decoded():
    assert DatabaseConfig.from_url("postgresql://h/my%20db").dbname == "my db"


# -- fast paths (commands/fast_paths.py) ---------------------------------------------------


def test_the_recorder_is_the_fast_one_unless_switched_off():
    config = DatabaseConfig.from_url("postgresql://h/tasks")
    assert config.eventsourcing_env()["PROCESS_RECORDER_TOPIC"] == FAST_RECORDER_TOPIC
    plain = config.eventsourcing_env(fast_paths=FastPaths(pg_insert=False))
    assert plain["PROCESS_RECORDER_TOPIC"] == PLAIN_RECORDER_TOPIC
    assert plain[ENV_KEY] == "pg_insert"
    module, _, name = PLAIN_RECORDER_TOPIC.partition(":")
    assert pg_recorder.__name__ == module
    recorder = getattr(pg_recorder, name)
    assert issubclass(recorder, PostgresProcessRecorder)
    # Only table creation differs from the library's: the inserts are its own.
    assert recorder.insert_events is PostgresProcessRecorder.insert_events
    assert getattr(pg_recorder, FAST_RECORDER_TOPIC.partition(":")[2]).__mro__[1] is recorder


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/x.db", "postgresql://h/tasks"])
def test_switches_ride_in_the_environment_only_when_one_is_off(url: str, tmp_path: Path):
    config = DatabaseConfig.from_url(url.format(tmp=tmp_path))
    assert ENV_KEY not in config.eventsourcing_env()
    assert ENV_KEY not in config.eventsourcing_env(fast_paths=FastPaths())
    off = FastPaths(task_cache=False, recent_events=False)
    env = config.eventsourcing_env(fast_paths=off)
    assert FastPaths.from_eventsourcing_env(env) == off
