"""Whether traces are on, read from the standard OpenTelemetry variables.

The OpenTelemetry SDK reads most ``OTEL_*`` variables itself (the endpoint, headers,
timeout, sampler, batch sizes, resource attributes); this decides only what it cannot:
whether to trace at all, and with which exporters, by these rules:

- ``OTEL_SDK_DISABLED=true``: off, whatever else is set;
- ``OTEL_TRACES_EXPORTER``: a comma-separated list of ``otlp``, ``console`` or ``none``
  (``none`` alone: off);
- unset: ``otlp`` when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else off (no endpoint, no traces).
OTLP goes over HTTP with protobuf (``http/protobuf``, the specification's default);
asking ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` for another is a start-up error, as is an
exporter not listed above.
"""

from __future__ import annotations

from collections.abc import Mapping

EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"


def parse_tracing(env: Mapping[str, str]) -> tuple[str, ...]:
    """The trace exporters the variables ask for (empty: tracing off); a ValueError of
    one line naming the variable when they ask for something this service cannot do."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    listed = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if listed:
        names = tuple(dict.fromkeys(name.strip() for name in listed.split(",") if name.strip()))
        unknown = [name for name in names if name not in (*EXPORTERS, "none")]
        if unknown:
            form = "use otlp, console or none (a comma-separated list)"
            raise ValueError(f"OTEL_TRACES_EXPORTER={listed!r}: {form}")
        exporters = tuple(name for name in names if name != "none")
    elif any(_set(env, f"OTEL_EXPORTER_OTLP_{part}ENDPOINT") for part in ("TRACES_", "")):
        exporters = ("otlp",)
    else:
        exporters = ()
    if "otlp" in exporters:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(name, "").strip().lower()
            if protocol:
                if protocol != PROTOCOL:
                    raise ValueError(f"{name}={protocol!r}: only {PROTOCOL} is supported")
                break
    return exporters


def check_tracing(name: str, exporters: tuple[str, ...]) -> None:
    """A value made in code holds to the same form."""
    if any(exporter not in EXPORTERS for exporter in exporters):
        raise ValueError(f"{name}: use exporters among {', '.join(EXPORTERS)}")


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())
