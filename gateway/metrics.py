"""Every gateway metric, defined once. Names from the seed are kept exactly; the rest follow Prometheus
conventions (base units, ``_total`` counters, bounded labels)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.prometheus import sample_sum

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
PROVIDER_CACHE_TOKENS = Counter(
    "provider_cache_tokens_total",
    "Prompt tokens the provider read from (kind=read) or wrote to (kind=write) its own prompt cache.",
    ["kind", "model"],
)
PROVIDER_CACHE_SAVED = Counter(
    "provider_cache_saved_usd_total",
    "USD the provider's prompt cache saved: cache reads and writes at their rates instead of input's.",
    ["model"],
)
CACHE_HITS = Counter("llm_cache_hits_total", "Requests answered from the cache.", ["endpoint"])
CACHE_MISSES = Counter(
    "llm_cache_misses_total", "Requests the cache could not answer (X-Cache: MISS).", ["endpoint"]
)
CACHE_TOKENS_SAVED = Counter(
    "llm_cache_tokens_saved_total", "Provider tokens not spent thanks to cache hits."
)
CACHE_COST_SAVED = Counter("llm_cache_cost_saved_usd_total", "Estimated USD not spent thanks to cache hits.")
# llm_cache_hit_rate is derived from the two counters at scrape time (gateway/prometheus.py), so it is
# right across workers: a gauge kept per process could not be summed.
ROUTING_DECISIONS = Counter(
    "llm_routing_decisions_total",
    "Model routing decisions (requested: alias or declared model, else _other).",
    ["requested", "chosen", "rule"],
)
ROUTING_COST_SAVED = Counter(
    "llm_routing_cost_saved_usd_total",
    "Estimated USD saved by routing, against the requested (or largest) model, at decision time.",
)
BATCHES = Counter("llm_batches_total", "Upstream calls that carried a micro-batch.")
BATCH_SIZE = Histogram(
    "llm_batch_size", "Requests per micro-batch.", buckets=(1, 2, 3, 4, 5, 6, 8, 10, 20, 50)
)
BATCH_FALLBACKS = Counter("llm_batch_fallbacks_total", "Batched requests sent again one by one.")
BATCH_TOKENS = Counter("llm_batch_tokens_total", "Provider tokens used by micro-batches.")
BATCH_TOKENS_UNBATCHED = Counter(
    "llm_batch_unbatched_tokens_estimate_total",
    "Estimated tokens the same batched tasks would use one by one.",
)
STORE_ERRORS = Counter("gateway_store_errors_total", "Shared-store operations that failed.", ["operation"])
# gateway_store_up and gateway_store_operation_duration_seconds live in gateway/store/metrics.py: the
# autoscaler sidecar uses the store too and must not export the request metrics above.
# Token budgets (gateway/budget): values come from the shared ledger, so the most recent write is right
# whichever worker made it; agent "_sprint" is the sprint's total.
TOKEN_BUDGET_REMAINING = Gauge(
    "token_budget_remaining",
    "Tokens left in the current sprint period (limit - committed), per agent and for the sprint.",
    ["sprint", "agent"],
    multiprocess_mode="mostrecent",
)
TOKEN_BUDGET_USED = Gauge(
    "token_budget_used",
    "Tokens committed in the current sprint period (since its start), per agent and for the sprint.",
    ["sprint", "agent"],
    multiprocess_mode="mostrecent",
)
TOKEN_BUDGET_THRESHOLD = Gauge(
    "token_budget_threshold",
    "The sprint's alert and block lines in tokens (alert_at, block_at times its current limit).",
    ["sprint", "kind"],
    multiprocess_mode="mostrecent",
)
TOKEN_BUDGET_EXCEEDED = Counter(
    "token_budget_exceeded_total", "Requests refused by the token budget (spent or paused).", ["agent"]
)
TOKEN_BUDGET_ALERTS = Counter(
    "token_budget_alerts_total",
    "Budget thresholds crossed (alert, block, low), once per period.",
    ["sprint", "kind"],
)
# Rate limits and the runaway brake (gateway/limits).
RATE_LIMITED = Counter(
    "gateway_rate_limited_total",
    "Requests refused by a rate limit, by scope and resource (scope provider: the provider's own headers).",
    ["scope", "resource"],
)
BRAKE_TRIPS = Counter(
    "gateway_brake_trips_total",
    "Agents paused by the runaway brake, by reason (repeat, burn).",
    ["agent", "reason"],
)
BRAKE_REFUSED = Counter(
    "gateway_brake_refused_total", "Requests refused because their agent is paused by the brake.", ["agent"]
)

# The request ledger (gateway/ledger): written in the background, never waited for.
LEDGER_RECORDS = Counter("gateway_ledger_records_total", "Request records written to the ledger.")
LEDGER_DROPPED = Counter(
    "gateway_ledger_dropped_total",
    "Request records lost: queue full, store or file error, or unencodable.",
    ["reason"],
)


def derived(families: list[Metric]) -> Iterator[Metric]:
    """Ratios computed from the summed counters at scrape time (right across workers)."""
    hits, misses = sample_sum(families, "llm_cache_hits"), sample_sum(families, "llm_cache_misses")
    rate = hits / (hits + misses) if hits + misses else 0.0
    yield GaugeMetricFamily("llm_cache_hit_rate", "Cache hits / (hits + misses) since start.", value=rate)
    used = sample_sum(families, "llm_batch_tokens")
    alone = sample_sum(families, "llm_batch_unbatched_tokens_estimate")
    efficiency = 1 - used / alone if alone else 0.0
    yield GaugeMetricFamily(
        "llm_batch_efficiency",
        "1 - tokens used by batches / tokens the same tasks would use alone.",
        value=efficiency,
    )


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
