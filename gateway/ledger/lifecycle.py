"""Start and stop what records the gateway's history: the request ledger and the heartbeat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.heartbeat import heartbeat_for
from gateway.ledger.writer import RequestLedger
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.store import Store


@asynccontextmanager
async def recording(policy: Policy, store: Store, prices: PriceBook) -> AsyncIterator[RequestLedger | None]:
    """The ledger (None when ``ledger.enabled`` is off) while the gateway runs, and its heartbeat."""
    ledger = RequestLedger.for_policy(policy, store, prices) if policy.ledger.enabled else None
    if ledger is not None:
        await ledger.start()
    note = ledger.note if ledger is not None else None
    heartbeat = heartbeat_for(policy.ledger, store, policy.store.prefix, "gateway", note)
    if heartbeat is not None:
        heartbeat.start()
    try:
        yield ledger
    finally:
        if heartbeat is not None:
            await heartbeat.stop()
        if ledger is not None:
            await ledger.close()
