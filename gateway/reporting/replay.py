"""The what-if replay: recorded traffic decided again under another policy, offline, with no provider call.

Records are taken in arrival order and go through the other policy's stages, in the gateway's order and
with the gateway's own pieces: the budget stage on an in-memory ledger driven by the replay's clock
(``BudgetManager`` + ``MemoryLedger``), the router's ``RuleSet``, the cache's ``terms`` and scope, and
the batcher's ``admits``. What no policy changes comes from the records: each answer's token counts and
the provider's time. So a policy's effect on hit rate, tokens, batching, budgets, cost and latency can be
read before it is deployed; replaying with the recorded policy gives back the recorded figures (a batch
with the recorded members keeps its recorded shares, see ``replay_batch.py``).

Limits: budgets start empty at the first replayed record (replay a whole sprint for budget what-ifs); a
request refused when recorded but admitted by the other policy has no known answer (counted apart);
tokens per request do not change with the model (the price does).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, replace

from gateway.batcher.eligibility import BatchFacts, admits
from gateway.budget import AlertSink, BudgetManager, Hold
from gateway.budget.memory import MemoryLedger
from gateway.cache.llmcache import scope_for, terms
from gateway.context import NO_BUDGET, Request, Usage
from gateway.errors import GatewayError, InvalidRequest
from gateway.ledger.record import MODEL_ENDPOINTS, routing_baseline
from gateway.ledger.schema import LedgerRecord as Record
from gateway.metrics import LabelLimiter
from gateway.policy import Policy
from gateway.policy.budget import WebhookConfig
from gateway.pricing import PriceBook
from gateway.protocols import BY_NAME
from gateway.reporting.outcome import BUDGET_REFUSALS, Outcome, recorded
from gateway.reporting.replay_batch import BatchWindow, Member, Sent, batch_sizes, shares
from gateway.reporting.replay_cache import CacheReplay
from gateway.router.rules import RuleSet
from gateway.tokens import max_output

USD_DIGITS = 8
"""Decimals of the costs in ledger records (``gateway/ledger/record.py``)."""


@dataclass(slots=True)
class Pending:
    """One request on its way through the replayed stages."""

    record: Record
    ctx: Request
    hold: Hold | None
    rule: str
    model: str
    cache: str = "BYPASS"
    served: Usage | None = None
    """The answer's usage: the request's own recorded answer, or the cached one for a new hit."""
    alone: Usage | None = None
    """Its cost sent alone, when it has a recorded answer; None: it failed (and fails again)."""
    share: Usage | None = None
    batch_id: str | None = None
    wait_s: float = 0.0


class Replay:
    def __init__(self, policy: Policy, records: list[Record]) -> None:
        self.policy = policy
        self.records = records
        self.now = records[0].arrival if records else 0.0
        clock = self._clock
        ledger = MemoryLedger(clock=clock)
        labels = LabelLimiter(policy.metrics.max_agent_labels)
        alerts = AlertSink(WebhookConfig())  # never started: no webhook calls from a what-if
        self.budget = BudgetManager(policy.budgets, ledger, alerts, labels, clock)
        self.rules = RuleSet(policy.routing, policy.models) if policy.routing.enabled else None
        self.aliases = frozenset(policy.routing.aliases)
        self.prices = PriceBook.from_policy(policy)
        self.baseline = routing_baseline(policy)
        self.cache = CacheReplay()
        self.window = BatchWindow(policy.batching)
        self.recorded_batches = batch_sizes(record.batch_id for record in records)
        self.upstream_ms = _upstream_times(records)
        self._outcomes: dict[int, Outcome] = {}
        """By ``id`` of the record, so :meth:`run` returns them in the records' order."""
        self._batches = 0

    def _clock(self) -> float:
        return self.now

    async def run(self) -> list[Outcome]:
        for record in self.records:
            self.now = record.arrival
            await self._send(self.window.due(self.now))
            await self._one(record)
        await self._send(self.window.drain())
        return [self._outcomes[id(record)] for record in self.records]

    def _done(self, record: Record, outcome: Outcome) -> None:
        self._outcomes[id(record)] = outcome

    async def _one(self, record: Record) -> None:
        if not _replayable(record):
            self._done(record, recorded(record))
            return
        ctx = _context(record)
        try:
            hold = await self.budget.reserve(ctx)
        except GatewayError as exc:
            self._done(record, _refused(record, exc))
            return
        if record.error in BUDGET_REFUSALS:  # admitted now, but there is no answer to replay
            await self._settle(hold, None, hit=False)
            self._done(record, replace(recorded(record), unknown=True))
            return
        try:
            model, rule = self._route(ctx, hold)
        except InvalidRequest as exc:
            await self._settle(hold, None, hit=False)
            self._done(record, _refused(record, exc))
            return
        pending = Pending(record, ctx, hold, rule, model)
        if record.status == 200:
            pending.alone = record.alone
        self._through_cache(pending)
        tokens = self._batchable(pending)
        if pending.cache != "HIT" and pending.alone is not None and tokens is not None:
            key = (model, record.batch_group, scope_for(self.policy.cache, ctx.team, ctx.agent))
            member = Member(
                pending, self.now, ctx.prompt_estimate, tokens, pending.alone, record.batch_id, record.usage
            )
            await self._send(self.window.join(key, member))
            return
        await self._finish(pending)

    def _route(self, ctx: Request, hold: Hold | None) -> tuple[str, str]:
        """The model and reason, decided as the routing stage does (``gateway/router/stage.py``)."""
        config, name = self.policy.routing, ctx.requested_model
        alias = name in self.aliases
        routed = ctx.protocol.routable
        if self.rules is None or not (alias or (config.rewrite_concrete_models and routed)):
            return name, "requested"
        if alias and not routed:
            raise InvalidRequest(
                f"'{name}' is a routing alias for chat and completions.", code="model_not_found"
            )
        output = max_output(ctx.body, config.assumed_output_tokens)
        standing = hold.standing if hold is not None else NO_BUDGET
        decision = self.rules.decide(ctx, standing, output, concrete=not alias)
        return decision.model, decision.reason

    def _through_cache(self, pending: Pending) -> None:
        record, ctx = pending.record, pending.ctx
        fixed = bool(record.deterministic) or not ctx.protocol.generates
        found = terms(self.policy.cache, ctx.endpoint, ctx.cache_control, fixed)
        content = record.content_key
        if found is None or content is None:
            return
        ttl, read, max_age = found
        key = (content, pending.model, scope_for(self.policy.cache, ctx.team, ctx.agent))
        entry = self.cache.lookup(key, self.now, max_age) if read else None
        if entry is not None:
            pending.cache, pending.served = "HIT", record.usage or entry.usage
            return
        pending.cache = "MISS" if read else "BYPASS"
        if pending.alone is not None:
            finished = self.now + record.latency_ms / 1000
            self.cache.store(key, self.now, finished, ttl, record.usage or pending.alone)

    def _batchable(self, pending: Pending) -> int | None:
        """The task's token estimate when the other policy would batch the request, else None."""
        record = pending.record
        if record.batch_group is None or record.task_tokens is None:
            return None
        facts = BatchFacts(record.task_type, record.lines, record.batchable, tokens=record.task_tokens)
        return record.task_tokens if admits(self.policy.batching, facts) else None

    async def _send(self, groups: list[Sent]) -> None:
        for sent_at, members in groups:
            batch_id = None
            if len(members) > 1:
                self._batches += 1
                batch_id = f"replay-{self._batches}"
            split = shares(members, self.policy.batching.json_mode, self.recorded_batches)
            for member, usage in zip(members, split, strict=True):
                pending: Pending = member.item
                pending.wait_s = sent_at - member.joined
                if batch_id is not None:
                    pending.share, pending.batch_id = usage, batch_id
                await self._finish(pending)

    async def _finish(self, pending: Pending) -> None:
        outcome = self._outcome(pending)
        hit = pending.cache == "HIT"
        usage = pending.served if hit else pending.share or pending.alone
        await self._settle(pending.hold, usage, hit)
        self._done(pending.record, outcome)

    async def _settle(self, hold: Hold | None, usage: Usage | None, hit: bool) -> None:
        if hold is not None:
            await self.budget.settle(hold, usage, hit)

    def _outcome(self, pending: Pending) -> Outcome:
        record, ctx = pending.record, pending.ctx
        outcome = replace(recorded(record), model=pending.model, rule=pending.rule, cache=pending.cache)
        outcome.batch_id = None
        outcome.tokens_used = outcome.saved_cache = outcome.saved_batch = 0
        outcome.cost_usd = outcome.baseline_cost_usd = None
        hit = pending.cache == "HIT"
        baseline_usage = pending.served if hit else pending.alone
        if baseline_usage is None:  # failed when recorded, and no cached answer now: fails again
            return outcome
        outcome.status, outcome.error = 200, None
        outcome.latency_ms = self._latency(pending)
        used = Usage() if hit else pending.share or baseline_usage
        outcome.tokens_used = used.total
        outcome.saved_cache = baseline_usage.total if hit else 0
        outcome.saved_batch = baseline_usage.total - used.total if pending.share else 0
        outcome.batch_id = pending.batch_id
        cost = self.prices.cost(pending.model, used.prompt_tokens, used.completion_tokens)
        baseline = self.baseline if ctx.requested_model in self.aliases else ctx.requested_model
        if baseline and cost is not None:  # rounded as the ledger records them
            outcome.cost_usd = round(cost, USD_DIGITS)
            before = self.prices.cost(
                baseline, baseline_usage.prompt_tokens, baseline_usage.completion_tokens
            )
            outcome.baseline_cost_usd = round(before, USD_DIGITS) if before is not None else None
        return outcome

    def _latency(self, pending: Pending) -> float:
        """The gateway's own time, plus the provider's (recorded, or typical for the model when the
        request was a hit then), plus the time in the batch window."""
        record = pending.record
        upstream = record.upstream_ms or 0.0
        own = max(0.0, record.latency_ms - upstream)
        if pending.cache == "HIT":
            return own
        if record.cache == "HIT":
            call = self.upstream_ms.get(pending.model, self.upstream_ms.get("", 0.0))
        else:
            call = max(0.0, upstream - (record.batch_wait_ms or 0.0))
        return own + call + pending.wait_s * 1000


def _replayable(record: Record) -> bool:
    """Requests the stages can decide again: those that got past the door (401s and bad JSON never
    did), and that were answered, failed upstream or were refused by the budget. Other refusals stay."""
    if not record.identified or record.endpoint not in MODEL_ENDPOINTS:
        return False
    status = record.status
    return status == 200 or status >= 499 or record.error in BUDGET_REFUSALS


def _context(record: Record) -> Request:
    """The request as the stages see it, rebuilt from its record (no prompt text is needed)."""
    return Request(
        request_id=record.request_id,
        protocol=BY_NAME[record.endpoint],
        agent=record.agent or "",
        team=record.team or "default",
        task_type=record.task_type,
        priority=record.priority,
        sprint=record.sprint,
        lines_estimate=record.lines,
        batchable=record.batchable,
        cache_control=record.cache_control,
        body={"max_tokens": record.max_tokens} if record.max_tokens else {},
        stream=bool(record.stream),
        requested_model=record.requested_model or "",
        prompt_estimate=record.prompt_estimate or 0,
    )


def _refused(record: Record, exc: GatewayError) -> Outcome:
    outcome = replace(recorded(record), status=exc.status, error=exc.code, cache=None, batch_id=None)
    outcome.tokens_used = outcome.saved_cache = outcome.saved_batch = 0
    outcome.cost_usd = outcome.baseline_cost_usd = None
    outcome.latency_ms = max(0.0, outcome.latency_ms - (record.upstream_ms or 0.0))
    return outcome


def _upstream_times(records: list[Record]) -> dict[str, float]:
    """Median provider time per model (and overall, under ``""``) of the recorded provider calls."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.status == 200 and record.cache != "HIT" and record.upstream_ms is not None:
            call = record.upstream_ms - (record.batch_wait_ms or 0.0)
            times[record.model or ""].append(call)
            times[""].append(call)
    return {model: statistics.median(values) for model, values in times.items()}


async def simulate(policy: Policy, records: list[Record]) -> list[Outcome]:
    """Every record's outcome under ``policy`` (records sorted by arrival)."""
    return await Replay(policy, records).run()
