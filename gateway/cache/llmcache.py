"""The LLMCache stage (seed section 3): answer repeated requests from the store.

Per request it decides whether the cache applies (policy, endpoint, ``Cache-Control``), looks the key up,
joins identical requests in flight, and after the provider answered stores complete answers only. The
cache fails open: store trouble means ``X-Cache: BYPASS``, never a failed request.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from gateway import metrics
from gateway.cache.entry import CacheEntry
from gateway.cache.keys import cache_key, deterministic
from gateway.cache.singleflight import Lease, SingleFlight
from gateway.context import CacheOutcome, Request
from gateway.logs import get_logger
from gateway.policy.cache import CacheConfig
from gateway.pricing import PriceBook
from gateway.protocols import Protocol
from gateway.store import Store, StoreError

log = get_logger("gateway.cache")
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)")


@dataclass(slots=True)
class Plan:
    """How the cache treats one request."""

    protocol: Protocol
    key: str
    scope: str
    ttl_s: float
    read: bool
    max_age_s: float | None = None


def scope_for(config: CacheConfig, team: str, agent: str) -> str:
    """Who may share an answer with this caller (part of the key, so never wider than the policy says).

    Names are percent-encoded, so no name can contain the ``/`` or ``:`` that separate the parts: two
    different (team, agent) pairs never share a scope. Valid names (letters, digits, ``_.@-``) read as
    themselves: ``agent:backend/dev-1``."""
    if config.scope == "global":
        return "global"
    if config.scope == "agent":
        return f"agent:{_part(team)}/{_part(agent)}"
    return f"team:{_part(team)}"


def _part(name: str) -> str:
    return quote(name, safe="@")


def terms(
    config: CacheConfig, endpoint: str, cache_control: str | None, is_deterministic: bool
) -> tuple[float, bool, float | None] | None:
    """``(ttl, read, max_age)`` for a request, or None when the cache must not be used.
    ``is_deterministic``: the answer cannot vary (temperature 0, a seed, or a protocol that does not
    generate text such as embeddings).

    Pure, so the what-if replay applies another policy's cache settings exactly as the gateway would."""
    if not config.enabled or endpoint not in config.endpoints:
        return None
    if config.only_deterministic and not is_deterministic:
        return None
    control = (cache_control or "").lower()
    if "no-store" in control:
        return None
    ttl, read, max_age = config.ttl_s, "no-cache" not in control, None
    match = _MAX_AGE.search(control)
    if match:  # a client may ask for fresher answers, not keep entries longer than the policy's TTL
        max_age = min(float(match.group(1)), config.ttl_s)
        read = read and max_age > 0
        ttl = max_age if max_age > 0 else ttl
    return ttl, read, max_age


class LLMCache:
    def __init__(self, config: CacheConfig, store: Store, prefix: str, prices: PriceBook) -> None:
        self.config = config
        self.store = store
        self.prefix = f"{prefix}cache:"
        self.prices = prices
        self.flights = SingleFlight(
            store, f"{prefix}cache-lock:", config.lock_ttl_s, config.wait_timeout_s, config.poll_interval_s
        )
        self._last_error_log = 0.0

    def scope_of(self, request: Request) -> str:
        return scope_for(self.config, request.team, request.agent)

    def plan(self, request: Request, model: str) -> Plan | None:
        """How the cache treats ``request`` sent to ``model``; None when the cache must not be used
        (``X-Cache: BYPASS``)."""
        protocol = request.protocol
        fixed = not protocol.generates or deterministic(request.body)
        found = terms(self.config, protocol.name, request.cache_control, fixed)
        if found is None or not protocol.cacheable(request.body):
            return None
        ttl, read, max_age = found
        scope = self.scope_of(request)
        fields = protocol.cache_fields(request.body, request.upstream_headers)
        key = cache_key(protocol.name, model, fields, scope)
        return Plan(protocol, key, scope, ttl, read, max_age)

    def entry_key(self, plan: Plan) -> str:
        """The store key: the scope's names are encoded (no ``:`` or ``{}`` of their own), the key is hex
        and the hash tag it shares with its singleflight lock (one slot on a cluster)."""
        return f"{self.prefix}{plan.scope}:{{{plan.key}}}"

    async def fetch(self, plan: Plan, model: str) -> CacheOutcome:
        """A stored or just-produced answer (``HIT``), a lease to produce it (``MISS``, or ``BYPASS``
        when the request must not read), or a plain ``BYPASS`` with neither (store down).

        Counts one hit or one miss per request, the same as its ``X-Cache``; a request that must not
        read (``no-cache``, ``max-age=0``) neither looks up nor takes an identical request's answer."""
        if not plan.read:
            return CacheOutcome("BYPASS", plan.key, lease=self.flights.alone(plan.key))
        try:
            outcome = await self.flights.join(plan.key, self.entry_key(plan), plan.max_age_s)
        except StoreError as exc:
            self._store_trouble("lookup", exc)
            return CacheOutcome("BYPASS", plan.key)
        if isinstance(outcome, CacheEntry):
            return self._hit(plan, model, outcome)
        metrics.CACHE_MISSES.labels(plan.protocol.name).inc()
        return CacheOutcome("MISS", plan.key, lease=outcome)

    async def settle(self, plan: Plan, lease: Lease, status: int, answer: bytes | None) -> None:
        """Store a complete successful answer and hand it to the requests waiting for it.

        Waiters here are woken before the first await, so whatever goes wrong (even cancellation) they
        are; the answer and the lock's release then go to the store in one round trip. A failed write
        only means the answer is not stored (the cache fails open)."""
        entry = None
        try:
            entry = self._entry(plan, status, answer)
        except Exception as exc:  # never fail an answered request over its cache copy
            self._store_trouble("store", exc)
        lock = self.flights.release(lease, entry)
        value = entry.encode() if entry is not None else None
        if value is None and lock is None:
            return
        try:
            await self.store.store_and_unlock(self.entry_key(plan), value, plan.ttl_s, lock, lease.token)
        except Exception as exc:
            self._store_trouble("store", exc)

    def _entry(self, plan: Plan, status: int, answer: bytes | None) -> CacheEntry | None:
        """The entry for a complete successful answer under ``max_entry_bytes``, else None."""
        if status != 200 or answer is None or len(answer) > self.config.max_entry_bytes:
            return None
        try:
            parsed = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return None
        return CacheEntry(time.time(), answer) if plan.protocol.complete(parsed) else None

    async def clear(self, scope: str | None = None, key: str | None = None) -> int:
        """Admin: drop everything, one scope, or one key (within a scope, or in every scope)."""
        if key is not None:
            if scope is not None:
                return await self.store.delete(f"{self.prefix}{scope}:{{{key}}}")
            return await self.store.delete_matching(self.prefix, f":{{{key}}}")
        return await self.store.delete_matching(self.prefix + (f"{scope}:" if scope else ""))

    def _hit(self, plan: Plan, model: str, entry: CacheEntry) -> CacheOutcome:
        metrics.CACHE_HITS.labels(plan.protocol.name).inc()
        usage = plan.protocol.usage(orjson.loads(entry.body))
        if usage is not None:
            metrics.CACHE_TOKENS_SAVED.inc(usage.total)
            cost = self.prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
            if cost:
                metrics.CACHE_COST_SAVED.inc(cost)
        return CacheOutcome("HIT", plan.key, entry, usage=usage)

    def _store_trouble(self, operation: str, exc: Exception) -> None:
        metrics.STORE_ERRORS.labels(f"cache_{operation}").inc()
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning(
                "cache_store_error", operation=operation, error=str(exc), detail="failing open (BYPASS)"
            )
