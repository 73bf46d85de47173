"""The budget stage: reserve before forwarding, commit the provider's usage after (seed section 6).

``reserve`` picks the sprint period, estimates the request (prompt estimate + max tokens), and asks the
ledger to check and reserve in one atomic step; a refusal is an OpenAI-shaped 429 the SDK does not retry.
``settle`` commits what the answer really used (0 for a cache hit, whose tokens count as saved) and
releases the rest; a commit the store does not take is retried in the background (the ledger counts a
hold id once) until it lands or the reservation would have expired anyway. With no sprint configured
both are a no-op.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import NoReturn

from gateway import metrics
from gateway.budget.alerts import AlertSink
from gateway.budget.ledger import Ask, Balance, Charge, Ledger, Settled, Verdict, cap
from gateway.budget.sprints import Period, period_of, select
from gateway.context import NO_BUDGET, Request, Standing
from gateway.errors import Forbidden, GatewayError
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.outage import let_through_or_refuse
from gateway.policy import Policy
from gateway.policy.budget import BudgetConfig, SprintConfig
from gateway.protocols import Usage
from gateway.store import Store, StoreError
from gateway.tokens import max_output

log = get_logger("gateway.budget")

HEADER = "X-Budget-Remaining-Tokens"
SPRINT_LABEL = "_sprint"
CRITICAL = ("P0", "P1")
RETAIN_S = 30 * 86400
"""How long a finished period's counters stay readable (admin reports) before Redis drops them."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A live reservation, settled once the answer is known, and where the budget stands with it."""

    period: Period
    agent: str
    hold_id: str
    tokens: int
    agent_base: int
    expires: float
    """When the ledger drops the hold by itself (``time.monotonic()``): commit retries stop there."""
    standing: Standing = NO_BUDGET
    remaining: int = 0
    """Tokens left to the caller (``X-Budget-Remaining-Tokens``)."""


class BudgetManager:
    retry_first_s = 0.1
    retry_max_s = 5.0
    """Backoff between background commit retries (doubling, jittered)."""
    max_pending_releases = 10_000

    def __init__(
        self,
        config: BudgetConfig,
        ledger: Ledger,
        alerts: AlertSink,
        agent_label: LabelLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.alerts = alerts
        self.agent_label = agent_label
        self.clock = clock
        self._settling: set[asyncio.Task[None]] = set()

    @classmethod
    def for_policy(cls, policy: Policy, store: Store, agent_label: LabelLimiter) -> BudgetManager:
        budgets = policy.budgets
        ledger = store.budget_ledger(policy.store.prefix)
        return cls(budgets, ledger, AlertSink(budgets.webhook), agent_label)

    async def start(self) -> None:
        await self.alerts.start()

    async def close(self) -> None:
        if self._settling:
            _, pending = await asyncio.wait(self._settling, timeout=5)
            for task in pending:  # the store is still down: the ledger expires these holds itself
                task.cancel()
            if pending:
                log.error("budget_commits_abandoned", count=len(pending), detail="the store did not answer")
        await self.alerts.close()

    def period(self, sprint: SprintConfig) -> Period | None:
        """The sprint's running period now (the admin API reports it)."""
        return period_of(sprint, self.clock())

    async def reserve(self, request: Request) -> Hold | None:
        """Reserve the request's estimate in its sprint, or raise the refusal; None: no budget applies."""
        if not self.config.sprints:
            return None
        now = self.clock()
        period = select(self.config.sprints, request.agent, request.sprint, now)
        if period is None:
            return None
        sprint = period.sprint
        share = sprint.share(request.agent)
        if share is None:
            share = sprint.unknown_share
            if not share:
                raise _not_in_sprint(request.agent, sprint.id)
        ask = self._ask(request, period, share)
        expires = time.monotonic() + self.config.reservation_ttl_s
        try:
            verdict = await self.ledger.reserve(period.bucket, ask)
        except StoreError as exc:
            # The store may have reserved before the answer was lost: release that hold id for sure
            # (unless a long outage piled up releases already: those holds expire by themselves).
            if len(self._settling) < self.max_pending_releases:
                self._spawn(self._commit(Hold(period, request.agent, ask.hold_id, 0, share, expires), 0, 0))
            self._store_down(exc)
            return None
        balance = verdict.balance
        self._gauge(period, request.agent, balance)
        if verdict.borrowed:
            left = cap(balance.sprint_limit, sprint.block_at) - _sprint_load(balance)
            log.info("budget_borrowed", sprint=sprint.id, agent=request.agent, tokens=ask.tokens)
        else:
            left = cap(balance.agent_limit, sprint.block_at) - _load(balance)
        if verdict.status != "ok":
            self._refused(request, period, verdict, ask, now, max(0, left))
        used = max(
            _fraction(balance.agent_used, balance.agent_limit),
            _fraction(balance.sprint_used, balance.sprint_limit),
        )
        standing = Standing(sprint.actions.downgrade and used >= sprint.alert_at, max(0.0, 1.0 - used))
        base, remaining = verdict.agent_base, max(0, left)
        return Hold(period, request.agent, ask.hold_id, ask.tokens, base, expires, standing, remaining)

    def _ask(self, request: Request, period: Period, share: int) -> Ask:
        """The reservation for ``request``: prompt estimate + requested (or default) completion tokens."""
        sprint = period.sprint
        output = max_output(request.body, self.config.default_max_tokens) if request.protocol.generates else 0
        pause = sprint.actions.pause_non_critical
        return Ask(
            agent=request.agent,
            hold_id=uuid.uuid4().hex,
            tokens=request.prompt_estimate + output,
            agent_tokens=share,
            sprint_tokens=sprint.total_tokens,
            block_at=sprint.block_at,
            pause_at=pause.at if pause.enabled else 0.0,
            critical=(request.priority or self.config.default_priority) in CRITICAL,
            borrow=sprint.actions.redistribute,
            seats=sprint.agents if isinstance(sprint.agents, int) else 0,
            unknown_tokens=sprint.unknown_share,
            ttl_s=self.config.reservation_ttl_s,
            expire_at=period.expire_at(RETAIN_S),
        )

    def settle(self, hold: Hold, usage: Usage | None, hit: bool) -> asyncio.Task[None]:
        """Commit the usage in a task of its own, so a client hanging up cannot lose the commit.
        A cache hit costs nothing: its tokens count as saved."""
        used = 0 if hit or usage is None else charged(usage, self.config.cache_read_weight)
        saved = usage.total if hit and usage is not None else 0
        return self._spawn(self._commit(hold, used, saved))

    def _spawn(self, commit: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(commit)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _commit(self, hold: Hold, used: int, saved: int) -> None:
        sprint = hold.period.sprint
        charge = Charge(
            agent=hold.agent,
            hold_id=hold.hold_id,
            tokens=used,
            saved=saved,
            agent_tokens=hold.agent_base,
            sprint_tokens=sprint.total_tokens,
            alert_at=sprint.alert_at,
            block_at=sprint.block_at,
            low_remaining=sprint.low_remaining,
            expire_at=hold.period.expire_at(RETAIN_S),
        )
        settled = await self._commit_until_taken(hold, charge)
        if settled is None:
            return
        self._gauge(hold.period, hold.agent, settled.balance)
        for kind in settled.fired:
            self.alerts.emit(kind, hold.period, None if kind == "low" else hold.agent, settled.balance)

    async def _commit_until_taken(self, hold: Hold, charge: Charge) -> Settled | None:
        """Commit, retrying while the store fails and the hold is alive; None: given up."""
        delay = self.retry_first_s
        while True:
            try:
                return await self.ledger.commit(hold.period.bucket, charge)
            except StoreError as exc:
                metrics.STORE_ERRORS.labels("budget_commit").inc()
                left = hold.expires - time.monotonic()
                fields = {"sprint": hold.period.sprint.id, "agent": hold.agent, "tokens": charge.tokens}
                if left <= 0:
                    log.error("budget_commit_failed", **fields, error=str(exc), detail="reservation expired")
                    return None
                log.warning("budget_commit_retry", **fields, error=str(exc))
                await asyncio.sleep(min(left, delay * random.uniform(0.5, 1.0)))
                delay = min(self.retry_max_s, delay * 2)

    def _refused(
        self, request: Request, period: Period, verdict: Verdict, ask: Ask, now: float, left: int
    ) -> NoReturn:
        metrics.TOKEN_BUDGET_EXCEEDED.labels(self.agent_label(request.agent)).inc()
        if verdict.first_block:
            self.alerts.emit("block", period, request.agent, verdict.balance)
        if verdict.status == "unknown":
            refusal = _not_in_sprint(request.agent, period.sprint.id)
            refusal.headers[HEADER] = str(left)
            raise refusal
        raise _exhausted(request.agent, period, verdict, ask, now)

    def _gauge(self, period: Period, agent: str, balance: Balance) -> None:
        sprint = period.sprint.id
        metrics.TOKEN_BUDGET_REMAINING.labels(sprint, self.agent_label(agent)).set(
            balance.agent_limit - balance.agent_used
        )
        metrics.TOKEN_BUDGET_REMAINING.labels(sprint, SPRINT_LABEL).set(
            balance.sprint_limit - balance.sprint_used
        )
        metrics.TOKEN_BUDGET_USED.labels(sprint, self.agent_label(agent)).set(balance.agent_used)
        metrics.TOKEN_BUDGET_USED.labels(sprint, SPRINT_LABEL).set(balance.sprint_used)
        for kind, share in (("alert", period.sprint.alert_at), ("block", period.sprint.block_at)):
            metrics.TOKEN_BUDGET_THRESHOLD.labels(sprint, kind).set(cap(balance.sprint_limit, share))

    def _store_down(self, exc: StoreError) -> None:
        let_through_or_refuse(
            exc,
            allow=self.config.on_store_error == "allow",
            operation="budget_reserve",
            log=log,
            let_through="request let through unaccounted",
            refusal="The token budget store cannot be reached, so budgeted requests are refused for now.",
            code="budget_unavailable",
        )


def _fraction(used: int, limit: int) -> float:
    return used / limit if limit > 0 else 1.0


def _load(balance: Balance) -> int:
    return balance.agent_used + balance.agent_reserved


def _sprint_load(balance: Balance) -> int:
    return balance.sprint_used + balance.sprint_reserved


def _not_in_sprint(agent: str, sprint: str) -> GatewayError:
    return Forbidden(
        f"Agent '{agent}' has no token budget in sprint '{sprint}'; ask an operator to add it to the policy.",
        code="agent_not_in_budget",
        headers={"x-should-retry": "false"},
    )


def _exhausted(agent: str, period: Period, verdict: Verdict, ask: Ask, now: float) -> GatewayError:
    """The 429 for a request the budget cannot cover; ``insufficient_quota`` so no SDK retries it."""
    sprint, balance = period.sprint, verdict.balance
    if verdict.status == "agent":
        left = cap(balance.agent_limit, sprint.block_at) - _load(balance)
        what = f"Agent '{agent}' has used its token budget in sprint '{sprint.id}'"
    elif verdict.status == "sprint":
        left = cap(balance.sprint_limit, sprint.block_at) - _sprint_load(balance)
        what = f"Sprint '{sprint.id}' has used its token budget (request by agent '{agent}')"
    else:
        left = cap(balance.sprint_limit, sprint.actions.pause_non_critical.at) - _sprint_load(balance)
        what = (
            f"Sprint '{sprint.id}' is short of tokens, so non-critical (P2/P3) work of agent '{agent}'"
            " is paused; P0/P1 requests go on"
        )
    resets = period.resets_at()
    when = (
        f"The budget resets at {resets}." if resets else "The sprint has no end; an operator must raise it."
    )
    message = f"{what}: {max(0, left)} tokens left, this request needs up to {ask.tokens}. {when}"
    headers = {"x-should-retry": "false", HEADER: str(max(0, left))}
    seconds = period.seconds_left(now)
    if seconds is not None:
        headers["Retry-After"] = str(seconds)
    code = "budget_paused" if verdict.status == "paused" else "budget_exceeded"
    return GatewayError(message, status=429, type="insufficient_quota", code=code, headers=headers)


def charged(usage: Usage, cache_read_weight: float) -> int:
    """The tokens a budget is charged for an answer: every token, prompt-cache reads weighted."""
    if cache_read_weight >= 1 or not usage.cached_input_tokens:
        return usage.total
    return usage.total - round(usage.cached_input_tokens * (1 - cache_read_weight))
