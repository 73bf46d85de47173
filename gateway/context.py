"""The request context: parsed once at the door, then read (and filled in) by every later stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.protocols import Protocol, Usage


@dataclass(slots=True)
class RequestContext:
    """Who asks, for what task, and what the gateway decided; one per request."""

    request_id: str
    protocol: Protocol
    agent: str
    team: str
    task_type: str | None = None
    priority: str | None = None
    task_id: str | None = None
    sprint: str | None = None
    lines_estimate: int | None = None
    batchable: bool | None = None
    cache_control: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    client_wants_usage: bool = False
    requested_model: str = ""
    model: str = ""
    route_reason: str = "requested"
    prompt_estimate: int = 0
    budget_left: float | None = None
    """Fraction (0..1) of the agent's or sprint's budget left, set by the budget stage for the router."""
    downgrade: bool = False
    """Set by the budget stage past ``alert_at``: the router then picks a cheaper tier."""
    provider: str = ""
    cache_status: str = "BYPASS"
    cache_key: str | None = None
    """The cache entry's key hash, set by the cache stage when the cache applies (ledger, admin)."""
    batch_id: str | None = None
    batch_size: int = 0
    batch_wait_s: float = 0.0
    """Set by the batcher for a request answered by a batch; the wait is the time in the batch window."""
    tokens_saved: int = 0
    saved_reason: str | None = None
    """Provider tokens this request did not cost, and why (``cache`` hit or ``batch`` share)."""
    usage: Usage | None = None
    status: int = 200
    upstream_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """The protocol's label in metrics, logs and the ledger."""
        return self.protocol.name


__all__ = ["RequestContext", "Usage"]
