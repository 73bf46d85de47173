"""The ledger in one process's memory: the same steps as the Redis scripts, made atomic by a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.budget.ledger import (
    SPRINT,
    Accounts,
    Ask,
    Balance,
    Charge,
    Ledger,
    Settled,
    Verdict,
    cap,
    field_name,
)


@dataclass(slots=True)
class _Bucket:
    fields: dict[str, int] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    holds: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    """hold id -> (tokens, agent, expires at)."""
    seats: set[str] = field(default_factory=set)
    expire_at: float | None = None

    def get(self, kind: str, agent: str = SPRINT) -> int:
        return self.fields.get(field_name(kind, agent), 0)

    def add(self, kind: str, agent: str, tokens: int) -> None:
        for name in (field_name(kind, agent), field_name(kind)):
            self.fields[name] = self.fields.get(name, 0) + tokens

    def purge(self, now: float) -> None:
        for hold_id, (tokens, agent, expires) in list(self.holds.items()):
            if expires <= now:
                del self.holds[hold_id]
                self.add("res", agent, -tokens)

    def release(self, hold_id: str) -> None:
        hold = self.holds.pop(hold_id, None)
        if hold is not None:
            self.add("res", hold[1], -hold[0])

    def balance(self, agent: str, agent_base: int, sprint_base: int) -> Balance:
        return Balance(
            self.get("used", agent),
            self.get("res", agent),
            agent_base + self.get("adj", agent),
            self.get("used"),
            self.get("res"),
            sprint_base + self.get("adj"),
        )

    def flag(self, name: str) -> bool:
        """Set a once-per-period flag; True only the first time."""
        if name in self.flags:
            return False
        self.flags.add(name)
        return True


class MemoryLedger(Ledger):
    """One process only: every worker of a ``--workers N`` gateway needs the Redis ledger instead."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _bucket(self, name: str, now: float, expire_at: float | None = None) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is not None and bucket.expire_at is not None and bucket.expire_at <= now:
            bucket = None
        if bucket is None:
            bucket = self._buckets[name] = _Bucket()
        if expire_at is not None:
            bucket.expire_at = expire_at
        bucket.purge(now)
        return bucket

    async def reserve(self, bucket: str, ask: Ask) -> Verdict:
        with self._lock:
            now = self._clock()
            b = self._bucket(bucket, now, ask.expire_at)
            base, status = ask.agent_tokens, "ok"
            if ask.seats and ask.agent not in b.seats:
                if len(b.seats) < ask.seats:
                    b.seats.add(ask.agent)
                else:
                    base = ask.unknown_tokens
                    status = "ok" if base else "unknown"
            before = b.balance(ask.agent, base, ask.sprint_tokens)
            borrowed = False
            if status == "ok":
                sprint_load = before.sprint_used + before.sprint_reserved + ask.tokens
                agent_load = before.agent_used + before.agent_reserved + ask.tokens
                if sprint_load > cap(before.sprint_limit, ask.block_at):
                    status = "sprint"
                elif (
                    not ask.critical and ask.pause_at and sprint_load > cap(before.sprint_limit, ask.pause_at)
                ):
                    status = "paused"
                elif agent_load > cap(before.agent_limit, ask.block_at):
                    borrowed = ask.critical and ask.borrow
                    status = "ok" if borrowed else "agent"
            first_block = status in ("agent", "sprint") and b.flag(f"block:{ask.agent}")
            if status != "ok":
                return Verdict(status, before, first_block=first_block, agent_base=base)
            b.holds[ask.hold_id] = (ask.tokens, ask.agent, now + ask.ttl_s)
            b.add("res", ask.agent, ask.tokens)
            return Verdict("ok", b.balance(ask.agent, base, ask.sprint_tokens), borrowed, agent_base=base)

    async def commit(self, bucket: str, charge: Charge) -> Settled:
        with self._lock:
            b = self._bucket(bucket, self._clock(), charge.expire_at)
            b.release(charge.hold_id)
            b.add("used", charge.agent, charge.tokens)
            b.add("saved", charge.agent, charge.saved)
            balance = b.balance(charge.agent, charge.agent_tokens, charge.sprint_tokens)
            fired = [
                kind
                for kind, at in (("alert", charge.alert_at), ("block", charge.block_at))
                if balance.agent_used >= at * balance.agent_limit and b.flag(f"{kind}:{charge.agent}")
            ]
            remaining = balance.sprint_limit - balance.sprint_used
            if remaining < charge.low_remaining * balance.sprint_limit and b.flag("low"):
                fired.append("low")
            return Settled(balance, tuple(fired))

    async def snapshot(self, bucket: str) -> Accounts:
        with self._lock:
            b = self._bucket(bucket, self._clock())
            return Accounts.from_fields(dict(b.fields), list(b.seats))

    async def reset(self, bucket: str, agent: str | None = None) -> None:
        with self._lock:
            b = self._bucket(bucket, self._clock())
            if agent is None:
                b.fields = {k: v for k, v in b.fields.items() if k.startswith("res")}
                b.flags.clear()
                b.seats.clear()
                return
            for kind in ("used", "saved"):
                b.add(kind, agent, -b.get(kind, agent))
            for kind in ("used", "saved", "adj"):
                b.fields.pop(field_name(kind, agent), None)
            b.flags -= {f"alert:{agent}", f"block:{agent}"}

    async def adjust(self, bucket: str, agent: str | None, tokens: int, expire_at: float | None) -> None:
        with self._lock:
            b = self._bucket(bucket, self._clock(), expire_at)
            name = field_name("adj", agent or SPRINT)
            b.fields[name] = b.fields.get(name, 0) + tokens
