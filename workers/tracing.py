"""OpenTelemetry traces: one task's trace, from its submit through serve and its worker.

Off unless the standard ``OTEL_*`` variables turn it on (``api/settings_forms.py``
``parse_tracing`` decides which exporters). Off, every helper returns at its first line
and nothing of OpenTelemetry is imported. On, the process has one ``TracerProvider``
with a batch span processor per exporter; the SDK itself reads the rest of the ``OTEL_*``
variables (endpoint, headers, timeout, sampler, batch sizes, resource attributes).

A trace context travels as W3C Trace Context text in a *carrier*: a dict with the keys
``traceparent`` (and ``tracestate`` when there is one), what the propagator reads and
writes. A task's carrier is stored in its Submitted event; its work items, CloudEvents and
the workers' reports carry one (docs/operations.md, "Traces").
Used by ``serve`` and ``worker`` alike: nothing here imports the service's own packages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

Carrier = dict[str, str]

TRACER_NAME = "taskexec"
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_OFF = nullcontext(None)  # what ``span`` gives when tracing is off (reusable)

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_kinds: dict[str, Any] = {}
_propagator: Any = None
_parent_based = True  # the provider's sampler follows a parent's decision (the default)
_api = SimpleNamespace(context=None, trace=None)  # opentelemetry's modules, once imported


def configure(exporters: Sequence[str], process: str) -> None:
    """Turn tracing on for this process, exporting with ``exporters`` (``otlp``,
    ``console``); none: it stays off. ``process`` (``serve``, ``worker``) names the
    service ``taskexec-<process>`` unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` names it."""
    if not exporters:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"taskexec.process": process})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"taskexec-{process}"}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)  # handlers' own spans join the task's trace
    use(provider)


def use(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` (a test's, with an in-memory exporter); None: off."""
    global _tracer, _provider, _propagator, _parent_based
    if provider is None:
        _tracer = _provider = None
        return
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace.sampling import ParentBased
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _kinds.update(
        internal=SpanKind.INTERNAL,
        server=SpanKind.SERVER,
        client=SpanKind.CLIENT,
        producer=SpanKind.PRODUCER,
        consumer=SpanKind.CONSUMER,
    )
    _propagator = TraceContextTextMapPropagator()
    _api.context, _api.trace = context, trace
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    _parent_based = isinstance(provider.sampler, ParentBased)


def shutdown() -> None:
    """Export what is left and stop (a process's last step; the SDK also does it at exit)."""
    if _provider is not None:
        _provider.shutdown()


def active() -> bool:
    return _tracer is not None


def current() -> Carrier | None:
    """The carrier of the current span (None: tracing off, or no span)."""
    if _tracer is None:
        return None
    carrier: Carrier = {}
    _propagator.inject(carrier)
    return carrier or None


def span(
    name: str,
    kind: str = "internal",
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """A context manager: a span made current while it runs, yielding it (None when
    tracing is off). ``parent``: a carrier (None: the current span, or a new trace);
    an exception ends it with an error status. Under a parent that was not sampled (and
    a parent-based sampler, the default) no span is made: the parent's context is made
    current as it is, so that it still travels on."""
    if _tracer is None:
        return _OFF
    context = _propagator.extract(parent) if parent else None
    if context is not None and _unsampled(parent):
        return _Current(None, context)
    made = _tracer.start_span(name, context=context, kind=_kinds[kind], attributes=attributes)
    return _Current(made, None)


class _Current:
    """``span``'s context manager: the span current while the block runs, ended after it
    (an Exception recorded on it). What the SDK's ``start_as_current_span`` does, without
    its three nested generator context managers: a measured share of a traced task's CPU
    (docs/benchmarks.md). Public API only: ``attach``, ``detach``, ``set_span_in_context``."""

    __slots__ = ("_context", "_made", "_token")

    def __init__(self, made: Span | None, context: Any) -> None:
        self._made = made
        self._context = context  # made None: the parent's, current as it is

    def __enter__(self) -> Span:
        if self._made is None:
            self._token = _api.context.attach(self._context)
            return _api.trace.get_current_span(self._context)  # type: ignore[no-any-return]
        self._token = _api.context.attach(_api.trace.set_span_in_context(self._made))
        return self._made

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        _api.context.detach(self._token)
        if self._made is None:
            return
        if isinstance(error, Exception):
            self._made.record_exception(error)
            failed(self._made, f"{type(error).__name__}: {error}")
        self._made.end()


def _unsampled(parent: Mapping[str, str] | None) -> bool:
    """Whether a parent-based sampler drops children of ``parent`` (its flags' sampled
    bit is 0): then no span of ours under it would be recorded."""
    text = parent.get("traceparent", "") if parent else ""
    return _parent_based and len(text) == 55 and not int(text[-2:], 16) & 1


def record(
    name: str,
    kind: str,
    parent: Mapping[str, str] | None,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any] | None = None,
    error: BaseException | None = None,
) -> None:
    """A span of something done already (one command of a batch's commit, one message
    of a published batch), under ``parent``; nothing without a parent or when off."""
    if _tracer is None or not parent or _unsampled(parent):
        return
    made = _tracer.start_span(
        name,
        context=_propagator.extract(parent),
        kind=_kinds[kind],
        attributes=attributes,
        start_time=start_ns,
    )
    if error is not None:
        made.record_exception(error)
        failed(made, type(error).__name__)
    made.end(end_time=end_ns)


def failed(made: Span | None, description: str) -> None:
    """Mark ``made`` (from ``span``) as ended in error, when there is one."""
    if made is not None:
        made.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, description))


def trace_id(carrier: Mapping[str, str] | None) -> str | None:
    """The trace id (32 hex digits) a carrier's ``traceparent`` names, if it is valid:
    for log lines, whether tracing is on or not."""
    if not carrier:
        return None
    found = _TRACEPARENT.fullmatch(carrier.get("traceparent", ""))
    return found.group(1) if found else None
