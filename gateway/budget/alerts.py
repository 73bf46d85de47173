"""Budget alerts: a structured log event, a metric and an optional webhook POST per threshold crossing.

The ledger raises each alert once per agent (or sprint) per period, whichever worker or replica saw the
crossing, so this module only reports. Webhook deliveries run in a background task with retries; the
request path only puts an event on a bounded queue and never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from gateway import metrics
from gateway.budget.ledger import Balance
from gateway.budget.sprints import Period
from gateway.logs import get_logger
from gateway.policy.budget import WebhookConfig

log = get_logger("gateway.budget")

MESSAGES = {
    "alert": "agent passed its alert threshold: the gateway switches it to cheaper models",
    "block": "agent reached its budget: new work is refused",
    "low": "less than the low-remaining share of the sprint budget is left",
}
_QUEUE_SIZE = 1000


class AlertSink:
    def __init__(self, webhook: WebhookConfig) -> None:
        self.webhook = webhook
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None
        self.delivered = 0

    def emit(self, kind: str, period: Period, agent: str | None, balance: Balance) -> None:
        """Report one crossing; ``agent`` None for sprint-wide alerts."""
        sprint = period.sprint
        event = {
            "event": f"budget_{kind}",
            "sprint": sprint.id,
            "period": period.index,
            "agent": agent,
            "message": MESSAGES[kind],
            "used": balance.sprint_used if agent is None else balance.agent_used,
            "limit": balance.sprint_limit if agent is None else balance.agent_limit,
            "sprint_used": balance.sprint_used,
            "sprint_limit": balance.sprint_limit,
            "resets_at": period.resets_at(),
            "at": time.time(),
        }
        metrics.TOKEN_BUDGET_ALERTS.labels(sprint.id, kind).inc()
        self.publish(event)

    def publish(self, event: dict[str, Any]) -> None:
        """Log ``event`` (its ``event`` field names it) and queue it for the webhook; never waits."""
        log.warning(**event)
        if self._worker is None:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("budget_webhook_dropped", event_kind=event["event"], detail="webhook queue full")

    async def start(self) -> None:
        if self.webhook.url:
            self._worker = asyncio.create_task(self._deliver_forever())

    async def close(self) -> None:
        """Give queued events a moment to go out, then stop."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self.webhook.timeout_s)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def _deliver_forever(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.webhook.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.webhook.headers) as session:
            while True:
                event = await self._queue.get()
                try:
                    await self._deliver(session, event)
                finally:
                    self._queue.task_done()

    async def _deliver(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> None:
        hook = self.webhook
        problem = ""
        for attempt in range(hook.attempts):
            try:
                async with session.post(hook.url, json=event) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            if attempt + 1 < hook.attempts:
                await asyncio.sleep(hook.backoff_s * 2**attempt)
        log.warning("budget_webhook_failed", event_kind=event["event"], attempts=hook.attempts, error=problem)
