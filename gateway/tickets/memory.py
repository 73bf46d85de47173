"""The ticket primitive in one process: the same steps as the Lua scripts, on dicts (single-threaded
asyncio makes each method atomic: none awaits in the middle)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.tickets.base import Bucket, Grant, Level, TicketStore

_SWEEP_EVERY = 10_000
"""Consumes between sweeps of buckets whose every ticket has left its window."""


@dataclass(slots=True)
class _Log:
    window_s: float
    order: deque[tuple[float, str]] = field(default_factory=deque)
    amounts: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def expire(self, now: float) -> None:
        edge = now - self.window_s
        while self.order and self.order[0][0] <= edge:
            _, ticket = self.order.popleft()
            self.total -= self.amounts.pop(ticket, 0)

    def level(self, capacity: int, now: float) -> Level:
        while self.order and self.order[-1][1] not in self.amounts:  # returned tickets, newest first
            self.order.pop()
        reset = self.order[-1][0] + self.window_s - now if self.order else 0.0
        return Level(capacity, max(0, capacity - self.total), max(0.0, reset))

    def wait(self, need: int, now: float) -> float:
        """Seconds until ``need`` more fits, walking the oldest tickets out."""
        freed = 0
        for at, ticket in self.order:
            freed += self.amounts.get(ticket, 0)
            if freed >= need:
                return max(0.0, at + self.window_s - now)
        return 0.0


class MemoryTickets(TicketStore):
    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._flags: dict[str, str] = {}
        self._calls = 0

    def _log(self, bucket: Bucket, now: float) -> _Log:
        log = self._logs.get(bucket.key)
        if log is None:
            log = self._logs[bucket.key] = _Log(bucket.window_s)
        log.expire(now)
        return log

    async def consume(
        self, ticket: str, buckets: Sequence[Bucket], now: float, gate: str | None = None
    ) -> Grant:
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        logs = [self._log(b, now) for b in buckets]
        if gate is not None and gate in self._flags:
            return Grant(False, self._levels(buckets, logs, now), gate=self._flags[gate])
        for i, (bucket, log) in enumerate(zip(buckets, logs, strict=True)):
            if bucket.amount and log.total + bucket.amount > bucket.capacity:
                levels = self._levels(buckets, logs, now)
                if bucket.amount > bucket.capacity:
                    return Grant(False, levels, i, -1.0)
                need = log.total + bucket.amount - bucket.capacity
                return Grant(False, levels, i, log.wait(need, now))
        for bucket, log in zip(buckets, logs, strict=True):
            if bucket.amount:
                log.order.append((now, ticket))
                log.amounts[ticket] = bucket.amount
                log.total += bucket.amount
        return Grant(True, self._levels(buckets, logs, now))

    @staticmethod
    def _levels(buckets: Sequence[Bucket], logs: list[_Log], now: float) -> tuple[Level, ...]:
        return tuple(log.level(b.capacity, now) for b, log in zip(buckets, logs, strict=True))

    async def settle(self, ticket: str, buckets: Sequence[Bucket], now: float) -> None:
        for bucket in buckets:
            log = self._log(bucket, now)
            old = log.amounts.get(ticket)
            if old is None:
                continue
            log.total += bucket.amount - old
            log.amounts[ticket] = bucket.amount
            if not bucket.amount:
                del log.amounts[ticket]  # its place in ``order`` is skipped when it expires

    async def raise_flag(self, key: str, value: str) -> bool:
        if key in self._flags:
            return False
        self._flags[key] = value
        return True

    async def clear_flag(self, key: str) -> bool:
        return self._flags.pop(key, None) is not None

    async def flags(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._flags.items() if k.startswith(prefix)}

    def _sweep(self, now: float) -> None:
        empty = []
        for key, log in self._logs.items():
            log.expire(now)
            if not log.order:
                empty.append(key)
        for key in empty:
            del self._logs[key]
