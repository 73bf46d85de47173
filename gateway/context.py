"""The request and the results of its stages: each frozen, passed on by the pipeline in the open.

The :class:`Request` is built once at identification and never changes. Every stage returns its own
result (the budget's :class:`Standing`, the router's :class:`Route`, the cache's :class:`CacheOutcome`,
the batcher's :class:`BatchResult`, the relay's :class:`Reply`); the pipeline hands each to the stages
that need it and assembles one :class:`Outcome` at the end for metrics, the log line and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.protocols import Protocol, Usage

if TYPE_CHECKING:
    from gateway.cache.entry import CacheEntry
    from gateway.cache.singleflight import Lease
    from gateway.upstream import Target


@dataclass(frozen=True, slots=True)
class Request:
    """Who asks, in which protocol, for what task; one per request, fixed once identified."""

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
    prompt_estimate: int = 0
    upstream_headers: dict[str, str] | None = None
    """The client headers the provider gets (the protocol's ``upstream_headers``); None: the defaults."""
    query: str = ""
    """The client's query string, for protocols that keep it (``?beta=true``)."""

    @property
    def endpoint(self) -> str:
        """The protocol's label in metrics, logs and the ledger."""
        return self.protocol.name


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the caller's budget stands after its reservation: the router reads it."""

    downgrade: bool = False
    """Past ``alert_at`` with ``downgrade`` on: the router picks a cheaper tier."""
    budget_left: float | None = None
    """Fraction (0..1) of the agent's or sprint's budget left; None: no budget applies."""


NO_BUDGET = Standing()


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision: the model to call and why."""

    target: Target
    model: str
    reason: str = "requested"


@dataclass(frozen=True, slots=True)
class CacheOutcome:
    """What the cache did: ``HIT``, ``MISS`` (this request leads and stores) or ``BYPASS``."""

    status: str = "BYPASS"
    key: str | None = None
    entry: CacheEntry | None = None
    lease: Lease | None = None
    usage: Usage | None = None
    """A hit's stored usage: tokens saved."""


BYPASS = CacheOutcome()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How the batcher served a request: the batch it shared (None: sent alone) and its wait."""

    batch_id: str | None = None
    size: int = 0
    wait_s: float = 0.0
    """Seconds in the batch window."""
    tokens_saved: int = 0
    """Prompt tokens this member did not cost thanks to the shared context."""
    fallback: bool = False
    """Sent again alone because its batch's reply did not answer it: still counted with that batch
    (its share of the botched call is in its usage), but not answered by it."""


@dataclass(frozen=True, slots=True)
class Call:
    """One upstream call, as the retries and fallbacks need it (a request's or a batch's)."""

    request_id: str
    stream: bool
    path: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str] | None = None
    query: str = ""


@dataclass(slots=True)
class Relay:
    """The relay's running account of an answer, written only by the relay and read by the pipeline
    even when the client hung up mid-stream (the budget must still charge what was streamed)."""

    status: int = 200
    usage: Usage | None = None
    upstream_seconds: float = 0.0
    target: Target | None = None
    batch: BatchResult | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything that happened to one request, assembled once at the end."""

    request: Request
    model: str
    """The model that answered (after fallbacks), else the routed or requested one."""
    route: Route | None = None
    provider: str = ""
    status: int = 200
    """The answer's own status when it differs from the response's (a stream that failed mid-way)."""
    standing: Standing = NO_BUDGET
    cache: CacheOutcome = BYPASS
    batch: BatchResult | None = None
    usage: Usage | None = None
    upstream_seconds: float = 0.0
    budget_remaining: int | None = None
    limit_headers: tuple[tuple[str, str], ...] = ()
    """The rate limits' remaining figures (``x-ratelimit-*``), on answers and errors alike."""

    @property
    def route_reason(self) -> str:
        return self.route.reason if self.route is not None else "requested"

    @property
    def tokens_saved(self) -> int:
        if self.cache.status == "HIT" and self.usage is not None:
            return self.usage.total
        return self.batch.tokens_saved if self.batch is not None and self.batch.batch_id else 0

    @property
    def saved_reason(self) -> str | None:
        if self.cache.status == "HIT" and self.usage is not None:
            return "cache"
        return "batch" if self.batch is not None and self.batch.batch_id else None


__all__ = [
    "BYPASS",
    "NO_BUDGET",
    "BatchResult",
    "CacheOutcome",
    "Call",
    "Outcome",
    "Relay",
    "Request",
    "Route",
    "Standing",
    "Usage",
]
