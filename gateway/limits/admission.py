"""Admission against the ``limits`` policy: one consume before the budget, one settle after the answer.

``admit`` builds the request's buckets (its content's repeat counter first, then every rule that applies),
consumes them in one step with the agent's pause flag as gate, returns the ``x-ratelimit-*`` headers with
what it took, and raises the 429 on a refusal. ``settle`` (in a task of its own, so a hang-up cannot lose
it) sets the tokens buckets to the real usage, returns the in-flight slot, gives a cache hit's repeat
ticket back and counts the agent's burn.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from gateway import metrics
from gateway.context import Outcome, Request
from gateway.errors import GatewayError
from gateway.identity import presented_key
from gateway.limits.brake import Brake, Publish, gate, paused_message
from gateway.limits.buckets import INFLIGHT, TOKENS, Need, Plans, Who
from gateway.limits.headers import rate_headers, refusal
from gateway.limits.provider import ProviderWatch
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.outage import let_through_or_refuse
from gateway.policy import Policy
from gateway.store import StoreError
from gateway.tickets import Bucket, Grant, Level, TicketStore
from gateway.tokens import max_output

log = get_logger("gateway.limits")


@dataclass(frozen=True, slots=True)
class Admission:
    """What ``admit`` took, to settle once the answer is known."""

    ticket: str
    needs: tuple[Need, ...]
    brake: bool
    """Count the request for the brake once it is answered."""
    headers: dict[str, str]
    """The remaining figures (``x-ratelimit-*``) every answer carries."""


class Limiter:
    def __init__(
        self,
        policy: Policy,
        tickets: TicketStore,
        publish: Publish,
        agent_label: LabelLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = policy.limits
        self.models = policy.models
        self.default_max_tokens = policy.budgets.default_max_tokens
        self.tickets = tickets
        self.clock = clock
        self.brake = Brake(self.config.brake, policy.budgets, tickets, publish, agent_label, clock)
        self.providers = ProviderWatch(self.config.provider_headers)
        self.plans = Plans(self.config)
        self._keyed = any(rule.scope == "key" for rule in self.config.rules)
        """Only key rules need the key's digest (hashing costs more than the rest of admission)."""
        self._settling: set[asyncio.Task[None]] = set()

    async def admit(self, request: Request, headers: Mapping[str, str]) -> Admission | None:
        """Take the request's tickets or raise the 429; None: nothing to settle."""
        provider = self._provider(request.requested_model)
        who = Who.of(request, _key_digest(headers) if self._keyed else "", provider)
        wanted = self.plans(who)
        estimate = self._estimate(request) if any(n.resource == TOKENS for n in wanted) else 0
        now = self.clock()
        if provider is not None and (wait := self.providers.wait(provider, estimate, now)) is not None:
            metrics.RATE_LIMITED.labels("provider", "provider").inc()
            message = f"Provider '{provider}' reports its rate limit nearly reached; retry in {wait:.1f}s."
            raise refusal(message, wait, {})
        brake = self.config.brake.enabled
        if not wanted and not brake:
            return None
        ticket = uuid.uuid4().hex
        buckets = [_bucket(n, estimate) for n in wanted]
        try:
            grant = await self.tickets.consume(ticket, buckets, now, gate(request.agent) if brake else None)
        except StoreError as exc:
            self._store_down(exc)
            return None
        shown = rate_headers(_levels(wanted, grant))
        if not grant.ok:
            self._refused(request, grant, wanted, shown)
        return Admission(ticket, wanted, brake, shown)

    def settle(self, admission: Admission | None, outcome: Outcome) -> asyncio.Task[None] | None:
        """Settle in a task of its own, so a client hanging up cannot lose it."""
        if admission is None:
            return None
        task = asyncio.ensure_future(self._settle(admission, outcome))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    def observe(self, provider: str, headers: Mapping[str, str]) -> None:
        """Feed a provider answer's own rate-limit headers back into admission."""
        self.providers.observe(provider, headers, self.clock())

    async def close(self) -> None:
        if self._settling:
            await asyncio.wait(self._settling, timeout=5)

    async def _settle(self, admission: Admission, outcome: Outcome) -> None:
        hit = outcome.cache.status == "HIT"
        used = 0 if hit or outcome.usage is None else outcome.usage.total
        back = [
            Bucket(n.key, n.capacity, n.window_s, used if n.resource == TOKENS else 0)
            for n in admission.needs
            if n.resource in (TOKENS, INFLIGHT)
        ]
        try:
            await self.tickets.settle(admission.ticket, back, self.clock())
            if admission.brake:
                await self.brake.count(outcome.request, admission.ticket, used, hit)
        except StoreError as exc:
            metrics.STORE_ERRORS.labels("limits_settle").inc()
            log.error("limits_settle_failed", agent=outcome.request.agent, error=str(exc))

    def _refused(
        self, request: Request, grant: Grant, wanted: tuple[Need, ...], shown: dict[str, str]
    ) -> NoReturn:
        if grant.gate is not None:
            metrics.BRAKE_REFUSED.labels(self.brake.agent_label(request.agent)).inc()
            raise _paused(paused_message(request.agent, grant.gate), shown)
        need = wanted[grant.refused]
        metrics.RATE_LIMITED.labels(need.scope, need.resource).inc()
        what = "requests in flight" if need.resource == INFLIGHT else need.resource
        per = "at once" if need.resource == INFLIGHT else f"per {need.window_s:g}s"
        message = f"Rate limit reached for {what} of {need.scope} '{need.name}': limit {need.capacity} {per}."
        if grant.retry_after_s >= 0:
            message += f" Please try again in {grant.retry_after_s:.1f}s."
        raise refusal(message, grant.retry_after_s, shown)

    def _estimate(self, request: Request) -> int:
        generates = request.protocol.generates
        output = max_output(request.body, self.default_max_tokens) if generates else 0
        return request.prompt_estimate + output

    def _provider(self, model: str) -> str | None:
        config = self.models.get(model) or self.models.get("*")
        return config.provider if config is not None else None

    def _store_down(self, exc: StoreError) -> None:
        let_through_or_refuse(
            exc,
            allow=self.config.on_store_error == "allow",
            operation="limits_admit",
            log=log,
            let_through="request let through unlimited",
            refusal="The rate-limit store cannot be reached, so requests are refused for now.",
            code="rate_limit_unavailable",
        )


def _bucket(need: Need, estimate: int) -> Bucket:
    amount = min(estimate, need.capacity) if need.resource == TOKENS else 1
    return Bucket(need.key, need.capacity, need.window_s, amount)


def _levels(wanted: tuple[Need, ...], grant: Grant) -> dict[str, list[Level]]:
    out: dict[str, list[Level]] = {}
    for need, level in zip(wanted, grant.levels, strict=True):
        out.setdefault(need.resource, []).append(level)
    return out


def _key_digest(headers: Mapping[str, str]) -> str:
    key = presented_key(headers)
    return hashlib.sha256(key.encode()).hexdigest() if key else "anonymous"


def _paused(message: str, headers: dict[str, str]) -> GatewayError:
    """Not retried by the SDK: only an operator's resume lifts a pause."""
    return GatewayError(
        message,
        status=429,
        type="rate_limit_error",
        code="agent_paused",
        headers={**headers, "x-should-retry": "false"},
    )
