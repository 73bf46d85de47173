"""OpenTelemetry traces following the GenAI semantic conventions, exported over OTLP/HTTP.

One server span per request (its parent is the client's W3C ``traceparent``, if any) and one client span
per provider call (its ``traceparent`` goes to the provider). Off unless the policy sets
``telemetry.otlp``: then :data:`OFF` stands in, every span is the shared :data:`NULL_SPAN`, and
OpenTelemetry (the ``otel`` extra) is never imported.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from gateway.policy.telemetry import OtlpConfig, TelemetryConfig


class Span:
    """A span as the pipeline sees it: a context manager with :meth:`annotate`."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def __enter__(self) -> Span:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def annotate(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        status: int | None = None,
        cache: str | None = None,
        route_reason: str | None = None,
        batch_id: str | None = None,
        budget_left: float | None = None,
        agent: str | None = None,
        team: str | None = None,
    ) -> None:
        """Set what the request turned out to be; ``None`` values are left out. Keyword parameters, not
        ``**kwargs``, so a call on :data:`NULL_SPAN` allocates nothing."""
        if self._span is None:
            return
        attributes = {
            "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "http.response.status_code": status,
            "llm_gateway.cache.status": cache,
            "llm_gateway.route.reason": route_reason,
            "llm_gateway.batch.id": batch_id,
            "llm_gateway.budget.left": budget_left,
            "llm_gateway.agent": agent,
            "llm_gateway.team": team,
        }
        self._span.set_attributes({name: value for name, value in attributes.items() if value is not None})


NULL_SPAN = Span()
"""The one span every call returns when telemetry is off: nothing is allocated per request."""


class Telemetry:
    """The interface the pipeline calls; this base is the off switch (:data:`OFF`)."""

    enabled = False

    def request_span(
        self, headers: Mapping[str, str], route: str, method: str = "POST"
    ) -> AbstractContextManager[Span]:
        """The server span of one request, a child of the client's ``traceparent`` when it sent one."""
        return NULL_SPAN

    def provider_span(self, provider: str, model: str, operation: str) -> AbstractContextManager[Span]:
        """The client span of one provider call; while it is open :func:`inject` propagates it."""
        return NULL_SPAN

    async def close(self) -> None:
        """Send the spans still waiting, then stop the exporter."""


OFF = Telemetry()
_PACKAGES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
_propagator: Any = None
"""The W3C trace-context propagator once tracing is on in this process; None means nothing to do."""


def inject(headers: Mapping[str, str]) -> Mapping[str, str]:
    """A provider request's headers with the active span's ``traceparent`` / ``tracestate`` added (a
    copy: ``headers`` may be shared); ``headers`` itself when tracing is off."""
    if _propagator is None:
        return headers
    carrier = dict(headers)
    _propagator.inject(carrier)
    return carrier


def trace_id() -> str | None:
    """The active span's trace id (32 hex digits), for the log line; None when no span is active."""
    if _propagator is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: a log line written while a span is active carries its ``trace_id``."""
    if _propagator is not None and (found := trace_id()) is not None:
        event.setdefault("trace_id", found)
    return event


def missing_package(config: TelemetryConfig) -> str | None:
    """Why the policy's tracing cannot run in this installation, or None; checked without importing."""
    if config.otlp is None:
        return None
    try:
        found = all(importlib.util.find_spec(name) for name in _PACKAGES)
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    return None if found else "needs OpenTelemetry, which is not installed (pip install 'llm-gateway[otel]')"


def telemetry_for(config: TelemetryConfig) -> Telemetry:
    """:data:`OFF`, or an OTLP exporter when ``telemetry.otlp`` is set (imports OpenTelemetry)."""
    return OFF if config.otlp is None else _Traced(config.otlp)


class _Traced(Telemetry):
    """Spans recorded by the OpenTelemetry SDK and sent in batches by a background thread."""

    enabled = True

    def __init__(self, config: OtlpConfig) -> None:
        global _propagator
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        exporter = OTLPSpanExporter(
            endpoint=config.endpoint, headers=dict(config.headers), timeout=config.timeout_s
        )
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=config.schedule_delay_ms)
        )
        self._tracer = self._provider.get_tracer("llm-gateway")
        self._kinds = SpanKind
        self._propagator = _propagator = TraceContextTextMapPropagator()

    @contextmanager
    def request_span(self, headers: Mapping[str, str], route: str, method: str = "POST") -> Iterator[Span]:
        parent = self._propagator.extract(headers)
        attributes = {"http.request.method": method, "http.route": route}
        with self._tracer.start_as_current_span(
            f"{method} {route}", context=parent, kind=self._kinds.SERVER, attributes=attributes
        ) as span:
            yield Span(span)

    @contextmanager
    def provider_span(self, provider: str, model: str, operation: str) -> Iterator[Span]:
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        }
        with self._tracer.start_as_current_span(
            f"{operation} {model}", kind=self._kinds.CLIENT, attributes=attributes
        ) as span:
            yield Span(span)

    async def close(self) -> None:
        await asyncio.to_thread(self._provider.shutdown)  # flushes; the export is blocking I/O
