"""The runaway brake: pause an agent stuck in a loop before it empties the sprint's budget.

Two trips, both counted with the ticket primitive so every replica sees one count:

- **repeat**: the same request content (the cache's content key, per agent) more than ``repeat_limit``
  times in ``repeat_window_s``; requests are counted when they finish and a cache hit is not counted, so
  only repeats that reach the provider (temperature > 0, ``no-cache``, errors) count.
- **burn**: more real tokens in one hour than ``burn_multiple`` × the agent's sprint share per hour.

The (N+1)th repeat trips it; the trip raises the agent's pause flag (checked inside every admission's
consume, no extra round trip), reports a
``brake_paused`` event (log, metric, the budget webhook), and refuses with 429 ``agent_paused`` until an
operator calls ``POST /admin/agents/{id}/resume``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway import metrics
from gateway.budget.sprints import select
from gateway.cache.keys import cache_key
from gateway.context import Request
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.policy.budget import BudgetConfig
from gateway.policy.limits import BrakeConfig
from gateway.tickets import Bucket, TicketStore

log = get_logger("gateway.brake")

FLAG = "brake:"
HOUR_S = 3600.0
Publish = Callable[[dict[str, Any]], None]


def gate(agent: str) -> str:
    return FLAG + agent


class Brake:
    def __init__(
        self,
        config: BrakeConfig,
        budgets: BudgetConfig,
        tickets: TicketStore,
        publish: Publish,
        agent_label: LabelLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.budgets = budgets
        self.tickets = tickets
        self.publish = publish
        self.agent_label = agent_label
        self.clock = clock

    def repeat_bucket(self, request: Request) -> Bucket:
        """The bucket counting this content for this agent (the model asked for, the agent as scope)."""
        fields = request.protocol.answer_fields(request.body)
        content = cache_key(request.endpoint, request.requested_model, fields, request.agent)
        key = f"repeat:{request.agent}:{content[:32]}"
        return Bucket(key, self.config.repeat_limit, self.config.repeat_window_s, 1)

    async def trip(self, agent: str, reason: str, message: str) -> None:
        """Pause ``agent``; the first replica to raise the flag reports it."""
        state = {"reason": reason, "message": message, "at": self.clock()}
        if not await self.tickets.raise_flag(gate(agent), orjson.dumps(state).decode()):
            return
        metrics.BRAKE_TRIPS.labels(self.agent_label(agent), reason).inc()
        self.publish({"event": "brake_paused", "agent": agent, **state})

    async def count(self, request: Request, ticket: str, tokens: int, hit: bool) -> None:
        """Count a finished request: its content once unless the cache answered it, its real tokens
        against the hourly burn; a count past its limit trips the brake (the next request is refused)."""
        if hit:
            return
        buckets = [self.repeat_bucket(request)]
        ceiling = self.burn_ceiling(request)
        if ceiling is not None and tokens > 0:
            buckets.append(Bucket(f"burn:{request.agent}", ceiling, HOUR_S, min(tokens, ceiling + 1)))
        grant = await self.tickets.consume(ticket, buckets, self.clock())
        if grant.ok:
            return
        cfg = self.config
        if grant.refused == 0:
            reason, message = (
                "repeat",
                (
                    f"Agent '{request.agent}' sent the same request more than {cfg.repeat_limit} times in"
                    f" {cfg.repeat_window_s:g}s without a cached answer; an operator must resume it."
                ),
            )
        else:
            reason, message = (
                "burn",
                (
                    f"Agent '{request.agent}' used tokens faster than {cfg.burn_multiple:g}x its sprint share"
                    f" per hour (over {ceiling} tokens in an hour); an operator must resume it."
                ),
            )
        await self.trip(request.agent, reason, message)

    def burn_ceiling(self, request: Request) -> int | None:
        """Tokens an hour above which the agent is a runaway; None: it has no sprint share to compare."""
        period = select(self.budgets.sprints, request.agent, request.sprint, self.clock())
        if period is None or period.start is None or period.end is None:
            return None
        sprint = period.sprint
        share = sprint.share(request.agent)
        share = sprint.unknown_share if share is None else share
        hours = max((period.end - period.start) / HOUR_S, 1.0)
        return max(self.config.burn_min_tokens, int(self.config.burn_multiple * share / hours))

    async def resume(self, agent: str) -> bool:
        """Lift ``agent``'s pause; False when it was not paused."""
        lifted = await self.tickets.clear_flag(gate(agent))
        if lifted:
            log.warning("brake_resumed", agent=agent)
        return lifted

    async def paused(self) -> dict[str, dict[str, Any]]:
        """Every paused agent with why and when."""
        flags = await self.tickets.flags(FLAG)
        return {key[len(FLAG) :]: orjson.loads(value) for key, value in flags.items()}


def paused_message(agent: str, state: str) -> str:
    try:
        why = orjson.loads(state).get("message", "")
    except (orjson.JSONDecodeError, AttributeError):
        why = ""
    return f"Agent '{agent}' is paused by the gateway's runaway brake. {why}".strip()
