"""The shared store's metrics, apart from gateway/metrics.py so that the autoscaler sidecar, which uses the
store but serves no requests, exports these without every request metric of the gateway."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

STORE_UP = Gauge(
    "gateway_store_up",
    "1 while the shared store answers (its last operation or readiness check succeeded), else 0.",
    multiprocess_mode="mostrecent",
)
STORE_SECONDS = Histogram(
    "gateway_store_operation_duration_seconds",
    "Time per shared-store operation that succeeded, connection retries included.",
    ["operation"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5),
)
