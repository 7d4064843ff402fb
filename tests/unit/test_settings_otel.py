"""Whether traces are on: the standard OTEL_* variables, read by api/settings_otel.py."""

from __future__ import annotations

import pytest

from api.settings import Settings
from api.settings_otel import parse_tracing

ENDPOINT = "http://127.0.0.1:4318"
P = "OTEL_EXPORTER_OTLP_PROTOCOL"


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "x"}, ()),  # naming a service turns nothing on
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, ()),  # blank is unset
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),  # the SDK's default endpoint
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "OTLP, console,otlp"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, P: "HTTP/protobuf"},
            ("otlp",),
        ),
        # The traces' own protocol wins over the general one.
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            ("otlp",),
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("console",)),
    ],
)
def test_the_variables_turn_tracing_on_or_leave_it_off(
    env: dict[str, str], exporters: tuple[str, ...]
) -> None:
    assert parse_tracing(env) == exporters
    assert Settings.from_env(env).tracing == exporters


@pytest.mark.parametrize(
    ("env", "named", "form"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER", "use otlp, console or none"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "only http/protobuf",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "only http/protobuf",
        ),
    ],
)
def test_what_cannot_be_done_is_a_one_line_start_up_error(
    env: dict[str, str], named: str, form: str
) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(named) and form in message and "\n" not in message


def test_settings_made_in_code_hold_to_the_same_form() -> None:
    assert Settings(tracing=("otlp", "console")).tracing == ("otlp", "console")
    with pytest.raises(ValueError, match="tracing"):
        Settings(tracing=("zipkin",))
