"""Every gateway metric, defined once. Names from the seed are kept exactly; the rest follow Prometheus
conventions (base units, ``_total`` counters, bounded labels)."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

_LLM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = Counter(
    "gateway_requests_total", "Requests answered, by endpoint and HTTP status.", ["endpoint", "code"]
)
REQUEST_SECONDS = Histogram(
    "gateway_request_duration_seconds", "Time from request to last byte.", ["endpoint"], buckets=_LLM_BUCKETS
)
UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_duration_seconds",
    "Time spent waiting on providers.",
    ["provider"],
    buckets=_LLM_BUCKETS,
)
OVERHEAD_SECONDS = Histogram(
    "gateway_overhead_seconds",
    "Gateway time excluding the provider call.",
    ["endpoint"],
    buckets=_OVERHEAD_BUCKETS,
)
IN_FLIGHT = Gauge("gateway_in_flight_requests", "Requests being served now.", multiprocess_mode="livesum")
UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries_total", "Provider calls retried, by reason.", ["provider", "reason"]
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total", "Provider calls that failed for good, by kind.", ["provider", "kind"]
)
FALLBACKS = Counter(
    "gateway_fallbacks_total", "Requests moved to a fallback model.", ["from_model", "to_model"]
)
TOKENS_USED = Counter(
    "tokens_used_total", "Provider tokens consumed (prompt + completion).", ["agent", "model"]
)
STORE_ERRORS = Counter("gateway_store_errors_total", "Shared-store operations that failed.", ["operation"])


class LabelLimiter:
    """Keeps a label's cardinality bounded: the first ``limit`` distinct values, then ``_other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "_other"
