"""TASKEXEC_NATS_URL (one server or a comma-separated list) and TASKEXEC_NATS_REPLICAS:
parsed in api/settings.py, refused at start-up with the variable's name."""

from __future__ import annotations

import pytest

from api.cli.main import main
from api.settings import Settings, parse_nats_servers, parse_replicas


@pytest.mark.parametrize(
    ("text", "servers"),
    [
        ("nats://127.0.0.1:4222", ("nats://127.0.0.1:4222",)),
        (
            "nats://a:4222,nats://b:4222,nats://c:4222",
            ("nats://a:4222", "nats://b:4222", "nats://c:4222"),
        ),
        (" nats://a:4222 , tls://b:4443 ", ("nats://a:4222", "tls://b:4443")),
        ("ws://a:8080,wss://b", ("ws://a:8080", "wss://b")),
        ("nats://user:secret@a:4222", ("nats://user:secret@a:4222",)),
        ("NATS://[::1]:4222", ("NATS://[::1]:4222",)),
    ],
)
def test_a_list_of_servers_is_split_in_order(text: str, servers: tuple[str, ...]) -> None:
    assert parse_nats_servers(text) == servers
    assert Settings.from_env({"TASKEXEC_NATS_URL": text}).nats_servers == servers


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nats://a:4222,", "server 2 of 2 is empty"),
        (",nats://a:4222", "server 1 of 2 is empty"),
        ("nats://a:4222,,nats://b:4222", "server 2 of 3 is empty"),
        (" , ", "is empty"),
        ("localhost:4222", "needs a scheme"),
        ("127.0.0.1:4222", "needs a scheme"),
        ("http://a:4222", "needs a scheme"),
        ("nats://a:4222,b:4222", "needs a scheme"),
        ("nats://", "needs a scheme"),
        ("nats://a:port", "is not a URL"),
    ],
)
def test_a_bad_list_is_a_value_error_naming_the_variable(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="TASKEXEC_NATS_URL") as caught:
        parse_nats_servers(text)
    assert says in str(caught.value)
    with pytest.raises(ValueError, match="TASKEXEC_NATS_URL"):
        Settings.from_env({"TASKEXEC_NATS_URL": text})


def test_a_password_in_a_bad_url_is_not_repeated() -> None:
    with pytest.raises(ValueError, match="TASKEXEC_NATS_URL") as caught:
        parse_nats_servers("nats://a:4222,http://user:hunter2@b:4222")
    assert "hunter2" not in str(caught.value)
    assert "***@b:4222" in str(caught.value)


def test_unset_or_blank_means_an_embedded_server() -> None:
    for env in ({}, {"TASKEXEC_NATS_URL": ""}, {"TASKEXEC_NATS_URL": "   "}):
        settings = Settings.from_env(env)
        assert settings.nats_url is None
        assert settings.nats_servers == ()


def test_the_url_is_kept_as_given_for_the_processes_dev_spawns() -> None:
    text = "nats://a:4222,nats://b:4222"
    assert Settings.from_env({"TASKEXEC_NATS_URL": text}).nats_url == text


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="TASKEXEC_NATS_URL"):
        Settings(nats_url="a:4222")
    with pytest.raises(ValueError, match="TASKEXEC_NATS_REPLICAS"):
        Settings(nats_replicas=0)


@pytest.mark.parametrize(("text", "replicas"), [("1", 1), ("3", 3), (" 5 ", 5)])
def test_replicas_from_one_to_five(text: str, replicas: int) -> None:
    assert parse_replicas(text) == replicas
    assert Settings.from_env({"TASKEXEC_NATS_REPLICAS": text}).nats_replicas == replicas


def test_replicas_default_to_one() -> None:
    assert Settings.from_env({}).nats_replicas == 1
    assert Settings.from_env({"TASKEXEC_NATS_REPLICAS": ""}).nats_replicas == 1


@pytest.mark.parametrize("text", ["0", "6", "-1", "3.0", "three", "1e1", "R3"])
def test_bad_replicas_are_a_value_error_naming_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match=r"TASKEXEC_NATS_REPLICAS=.*from 1 to 5"):
        parse_replicas(text)
    with pytest.raises(ValueError, match="TASKEXEC_NATS_REPLICAS"):
        Settings.from_env({"TASKEXEC_NATS_REPLICAS": text})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TASKEXEC_NATS_URL", "nats://a:4222,"), ("TASKEXEC_NATS_REPLICAS", "7")],
)
def test_the_command_line_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["worker"]) == 2  # before any connection is tried
    assert variable in capsys.readouterr().err
