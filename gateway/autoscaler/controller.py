"""One scaling cycle per target: read the backlog and the replicas, decide, act, export, log why.

The cycle holds (no action, an error counted and logged) whenever something it needs cannot be read,
when its backlog reading is older than one poll interval by the time it would act, or when this
sidecar is not the leader. The cooldown is stored in Redis, so a new leader honours its predecessor's.
All timestamps come from an injectable clock, so tests drive cooldowns and windows without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import redis.asyncio as aioredis

from gateway.autoscaler import metrics
from gateway.autoscaler.actuators import Actuator, ActuatorError, with_retry
from gateway.autoscaler.decision import Decision, Rules, decide, low_since
from gateway.autoscaler.signal import Backlog, BacklogReader
from gateway.logs import get_logger
from gateway.policy.autoscaler import AutoscalerConfig, TargetConfig

if TYPE_CHECKING:
    from gateway.store.topology import Client

log = get_logger("gateway.autoscaler")
REDIS_ERRORS = (aioredis.RedisError, OSError, asyncio.TimeoutError)


class Leadership(Protocol):
    is_leader: bool

    async def confirm(self) -> bool: ...


@dataclass
class TargetState:
    low_since: float | None = None
    last_reading_at: float | None = None


class TargetController:
    """Scales one target; keeps only what the pure decision needs between cycles."""

    def __init__(
        self,
        target: TargetConfig,
        config: AutoscalerConfig,
        actuator: Actuator,
        client: Client,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target, self.config, self.actuator = target, config, actuator
        self.redis, self.reader, self.clock = client, BacklogReader(client), clock
        self.cooldown_key = f"{prefix}autoscaler:last_scale:{target.name}"
        self.rules = Rules(
            target.queue_high,
            target.queue_low,
            target.step,
            target.min_replicas,
            target.max_replicas,
            config.cooldown_s,
            config.stabilization_s,
        )
        self.state = TargetState()

    async def cycle(self, leader: Leadership) -> Decision | None:
        """One read-decide-act pass; ``None`` when it held because of an error."""
        seen = await self._observe()
        if seen is None:
            return None
        backlog, current, last_scale_at, now = seen
        poll = self.config.poll_interval_s
        previous = self.state.low_since
        if self.state.last_reading_at is None or backlog.taken_at - self.state.last_reading_at > 2 * poll:
            previous = None  # readings were missed (standby, slow cycle): it may not have stayed low
        self.state = TargetState(
            low_since(previous, backlog.total, self.rules, backlog.taken_at), backlog.taken_at
        )
        decision = decide(self.rules, backlog.total, current, now, last_scale_at, self.state.low_since)
        metrics.DESIRED_REPLICAS.labels(self.target.name).set(decision.desired)
        why = {
            "target": self.target.name,
            "signal": backlog.signal,
            "backlog": backlog.total,
            "streams": {r.stream: [r.figure(backlog.signal), r.source] for r in backlog.streams},
            "current": current,
            "desired": decision.desired,
            "direction": decision.direction,
            "reason": decision.reason,
        }
        if decision.direction == "none":
            log.info("autoscaler.decision", acted=False, **why)
            return decision
        if await self._apply(decision, leader, now):
            log.info("autoscaler.decision", acted=True, **why)
            return decision
        return None

    async def _observe(self) -> tuple[Backlog, int, float | None, float] | None:
        """Backlog, current replicas, last scale time and now; ``None`` (held) if any is missing or stale."""
        try:
            backlog = await self.reader.read(self.target, self.clock())
            last_scale_at = await self._last_scale_at()
        except REDIS_ERRORS as exc:
            self.state = TargetState()  # a gap in the readings: the backlog may not have stayed low
            self._hold("redis", f"cannot read the backlog: {type(exc).__name__}: {exc}")
            return None
        for reading in backlog.streams:
            metrics.QUEUE_LENGTH.labels(reading.stream).set(reading.figure(backlog.signal))
        try:
            current = await with_retry(
                self.actuator.get_replicas, self.config.retry, self.actuator.description
            )
        except ActuatorError as exc:
            self._hold("target_read", f"cannot read replicas: {exc}")
            return None
        metrics.CURRENT_REPLICAS.labels(self.target.name).set(current)
        now, poll = self.clock(), self.config.poll_interval_s
        if now - backlog.taken_at > poll:
            self._hold("stale", f"backlog reading is {now - backlog.taken_at:.1f}s old (poll {poll}s)")
            return None
        return backlog, current, last_scale_at, now

    async def _apply(self, decision: Decision, leader: Leadership, now: float) -> bool:
        """Scale, if this sidecar still leads; then count it and start the shared cooldown."""
        if not await leader.confirm():
            self._hold("leadership", "lost the leader lock before acting")
            return False
        try:
            await with_retry(
                lambda: self.actuator.set_replicas(decision.desired),
                self.config.retry,
                self.actuator.description,
            )
        except ActuatorError as exc:
            self._hold("target_write", f"cannot scale to {decision.desired}: {exc}")
            return False
        metrics.SCALE_EVENTS.labels(self.target.name, decision.direction).inc()
        metrics.CURRENT_REPLICAS.labels(self.target.name).set(decision.desired)
        await self._mark_scaled(now)
        return True

    def _hold(self, kind: str, why: str) -> None:
        metrics.ERRORS.labels(kind).inc()
        log.warning("autoscaler.hold", target=self.target.name, kind=kind, reason=why)

    async def _last_scale_at(self) -> float | None:
        value = await self.redis.get(self.cooldown_key)
        return float(value) if value is not None else None

    async def _mark_scaled(self, now: float) -> None:
        """Start the cooldown for every sidecar; the key expires with it."""
        if self.config.cooldown_s <= 0:
            return
        try:
            await self.redis.set(self.cooldown_key, repr(now), px=int(self.config.cooldown_s * 1000) + 1000)
        except REDIS_ERRORS as exc:
            self._hold("redis", f"scaled, but cannot record the cooldown: {exc}")


class Autoscaler:
    """Every target of the policy, cycled every poll interval while this sidecar leads."""

    def __init__(
        self,
        config: AutoscalerConfig,
        client: Client,
        actuators: Mapping[str, Actuator],
        leader: Leadership,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.leader = config, leader
        self.controllers = [
            TargetController(t, config, actuators[t.name], client, prefix, clock) for t in config.targets
        ]
        self.last_cycle_at = time.monotonic()
        metrics.initialise(t.name for t in config.targets)

    async def run_cycle(self) -> dict[str, Decision | None]:
        """One pass over every target (concurrently); nothing is read while standing by."""
        self.last_cycle_at = time.monotonic()
        if not self.leader.is_leader:
            return {}
        results = await asyncio.gather(*(c.cycle(self.leader) for c in self.controllers))
        return {c.target.name: result for c, result in zip(self.controllers, results, strict=True)}

    async def run(self, stop: asyncio.Event, elected: asyncio.Event | None = None) -> None:
        """Cycle until ``stop``; a fresh election starts a cycle at once instead of after the interval."""
        while not stop.is_set():
            started = time.monotonic()
            if elected is not None:
                elected.clear()
            try:
                await self.run_cycle()
            except Exception:  # a bug must not end the sidecar: count it, hold, try next cycle
                metrics.ERRORS.labels("internal").inc()
                log.exception("autoscaler.hold", kind="internal", reason="unexpected error in cycle")
            remaining = self.config.poll_interval_s - (time.monotonic() - started)
            await _wait_any([stop] + ([elected] if elected else []), max(0.0, remaining))


async def _wait_any(events: list[asyncio.Event], within_s: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
