"""Every long-lived part of a gateway process, built in one place and closed in reverse order.

Each part enters one ``AsyncExitStack`` as it starts, so what really started is closed, last started first,
also when a later part fails to start. The order is the shutdown contract: the heartbeat and the ledger stop
first (they record the others), the batcher sends what waits while the providers are still open, budget
settlements and routing-log appends finish while the store is still open, and the store closes last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.batcher import Batcher
from gateway.budget import BudgetManager
from gateway.cache import LLMCache
from gateway.heartbeat import heartbeat_for
from gateway.identity import Authenticator
from gateway.ledger import RequestLedger
from gateway.limits import Limiter
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.pipeline import Pipeline
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.providers import Provider, build_provider
from gateway.router import Router, RoutingLog
from gateway.store import Store, open_store
from gateway.telemetry import Telemetry, telemetry_for
from gateway.tickets import tickets_for
from gateway.upstream import ModelCatalog, Upstream

log = get_logger("gateway.services")


class Startable(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Startable)


@asynccontextmanager
async def running(part: S) -> AsyncIterator[S]:
    """A part with ``start`` and ``close`` as a context: closed on exit, never if its start failed."""
    await part.start()
    try:
        yield part
    finally:
        await part.close()


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers use, once every part has started."""

    policy: Policy
    store: Store
    providers: dict[str, Provider]
    cache: LLMCache
    routing_log: RoutingLog
    budget: BudgetManager
    pipeline: Pipeline
    ledger: RequestLedger | None
    """None when ``ledger.enabled`` is off."""
    telemetry: Telemetry
    """``OFF`` unless ``telemetry.otlp`` is set."""

    @classmethod
    @asynccontextmanager
    async def open(cls, policy: Policy, store: Store | None = None) -> AsyncIterator[Services]:
        """Start every part for ``policy``; a ``store`` passed in is the caller's to close."""
        async with AsyncExitStack() as stack:
            yield await cls._start(stack, policy, store)

    @classmethod
    async def _start(cls, stack: AsyncExitStack, policy: Policy, given: Store | None) -> Services:
        store = given if given is not None else open_store(policy.store)
        if given is None:
            stack.push_async_callback(store.close)
        telemetry = telemetry_for(policy.telemetry)
        stack.push_async_callback(telemetry.close)  # after every part that ends spans: flushes them
        providers = {name: build_provider(name, cfg) for name, cfg in policy.providers.items()}
        for provider in providers.values():
            await stack.enter_async_context(running(provider))
        auth = Authenticator.for_policy(policy)
        if auth.open_mode:
            log.warning("open_mode", detail="auth.keys is empty: any client is accepted (local use only)")
        prices = PriceBook.from_policy(policy)
        catalog = ModelCatalog(policy, providers)
        cache = LLMCache(policy.cache, store, policy.store.prefix, prices)
        agent_label = LabelLimiter(policy.metrics.max_agent_labels)
        budget = await stack.enter_async_context(
            running(BudgetManager.for_policy(policy, store, agent_label))
        )
        routing_log = RoutingLog(store, policy.routing.log_stream, policy.routing.log_maxlen)
        stack.push_async_callback(routing_log.drain)
        router = Router(policy.routing, catalog, routing_log, prices.cost)
        upstream = Upstream()
        batcher = Batcher(policy.batching, upstream, catalog, cache.scope_of)
        stack.push_async_callback(batcher.close)
        limits = Limiter(policy, tickets_for(store, policy.store.prefix), budget.alerts.publish, agent_label)
        stack.push_async_callback(limits.close)
        pipeline = Pipeline(
            policy, auth, catalog, upstream, cache, router, budget, batcher, limits, telemetry
        )
        ledger = None
        if policy.ledger.enabled:
            ledger = RequestLedger.for_policy(policy, store, prices)
            await stack.enter_async_context(running(ledger))
        note = ledger.note if ledger is not None else None
        heartbeat = heartbeat_for(policy.ledger, store, policy.store.prefix, "gateway", note)
        if heartbeat is not None:
            await stack.enter_async_context(heartbeat)
        log.info("started", store=store.kind, providers=list(providers), models=len(policy.models))
        return cls(policy, store, providers, cache, routing_log, budget, pipeline, ledger, telemetry)
