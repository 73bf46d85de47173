"""Schema of the ``telemetry`` policy section: OpenTelemetry traces exported over OTLP/HTTP.

Off unless ``telemetry.otlp`` is set; then the gateway needs the ``otel`` extra
(``pip install 'llm-gateway[otel]'``), imported only in that case.
"""

from __future__ import annotations

from pydantic import Field

from gateway.policy.core import Section


class OtlpConfig(Section):
    """Where and how spans are sent: an OpenTelemetry Collector (or any OTLP/HTTP receiver)."""

    endpoint: str = Field(min_length=1)
    """OTLP/HTTP traces URL, e.g. ``http://otel-collector:4318/v1/traces`` (protobuf bodies)."""
    headers: dict[str, str] = {}
    """Headers sent with every export (a vendor's API key, ``${VAR}`` from the environment)."""
    service_name: str = Field("llm-gateway", min_length=1)
    """The ``service.name`` resource attribute the spans carry."""
    sample_ratio: float = Field(1.0, ge=0, le=1)
    """Share of new traces recorded (parent-based: a client's sampled ``traceparent`` is always
    followed, an unsampled one never)."""
    timeout_s: float = Field(10.0, gt=0)
    """How long one export may take before it is given up (spans are sent in the background)."""
    schedule_delay_ms: float = Field(5000.0, gt=0)
    """Finished spans are sent at least this often (milliseconds); the rest go at shutdown."""


class TelemetryConfig(Section):
    """OpenTelemetry traces following the GenAI semantic conventions (docs/telemetry.md)."""

    otlp: OtlpConfig | None = None
    """The OTLP/HTTP exporter; unset (the default) means no tracing and no OpenTelemetry import."""
