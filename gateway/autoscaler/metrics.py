"""Every metric the autoscaler exports, defined once on the default registry.

``queue_length`` keeps the seed's name; the rest follow Prometheus naming with bounded labels (targets
and streams come from the policy, directions and error kinds from fixed sets).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

QUEUE_LENGTH = Gauge(
    "queue_length",
    "Backlog of a watched task stream: the figure its target scales on",
    ["stream"],
    multiprocess_mode="max",
)
DESIRED_REPLICAS = Gauge(
    "autoscaler_desired_replicas", "Replicas the last decision asked for", ["target"], multiprocess_mode="max"
)
CURRENT_REPLICAS = Gauge(
    "autoscaler_current_replicas",
    "Replicas the target was set to when last read",
    ["target"],
    multiprocess_mode="max",
)
SCALE_EVENTS = Counter(
    "autoscaler_scale_events", "Scale actions applied to a target", ["target", "direction"]
)
IS_LEADER = Gauge(
    "autoscaler_is_leader", "1 while this sidecar holds the leader lock and may act", multiprocess_mode="max"
)
ERROR_KINDS = ("redis", "target_read", "target_write", "stale", "leadership", "internal")
ERRORS = Counter(
    "autoscaler_errors", "Cycles that held instead of acting, by cause: " + ", ".join(ERROR_KINDS), ["kind"]
)


def initialise(targets: Iterable[str]) -> None:
    """Export every known series at zero from the start, so rates and alerts see the first event."""
    for kind in ERROR_KINDS:
        ERRORS.labels(kind)
    for target in targets:
        for direction in ("up", "down"):
            SCALE_EVENTS.labels(target, direction)
