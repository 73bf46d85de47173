"""One acting sidecar among many: a Redis lock with a TTL that its holder keeps renewing.

Each sidecar (one per gateway pod) runs :class:`LeaderElector`. The holder renews every third of the
TTL with a compare-and-pexpire, so it keeps the lock only while it is alive and still the owner; the
others retry when the lock's remaining TTL runs out, so a dead leader is replaced within one TTL.
A leader that cannot reach Redis for a whole TTL steps down: its lock has expired by then.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from gateway.autoscaler import metrics
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.store.topology import Client

log = get_logger("gateway.autoscaler")

_ACQUIRE = """
-- KEYS[1]: the lock; ARGV[1]: our token; ARGV[2]: TTL in ms.
-- Returns 0 when the lock is now ours, else the ms left on the holder's lock.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 0 end
return math.max(redis.call('PTTL', KEYS[1]), 1)
"""
_RENEW = """
-- KEYS[1]: the lock; ARGV[1]: our token; ARGV[2]: TTL in ms. Extends only a lock we still hold.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
-- KEYS[1]: the lock; ARGV[1]: our token. Deletes only a lock we still hold.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """The three atomic operations on the lock key; each instance has its own random token."""

    def __init__(self, client: Client, key: str, ttl_s: float) -> None:
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def try_acquire(self) -> float:
        """0 when we hold the lock now, else the seconds until the holder's lock expires."""
        return int(await self._acquire(keys=[self.key], args=[self.token, self.ttl_ms])) / 1000

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.token]))


class LeaderElector:
    """Keeps ``is_leader`` current; ``elected`` is set each time this sidecar becomes the leader."""

    def __init__(self, lock: LeaderLock, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = lock
        self.ttl_s = ttl_s
        self.interval_s = ttl_s / 3
        self.clock = clock
        self.is_leader = False
        self.elected = asyncio.Event()
        self._renewed_at = 0.0

    async def confirm(self) -> bool:
        """Renew right now: called before acting, so a leader that lost the lock never scales."""
        if not self.is_leader:
            return False
        try:
            held = await self.lock.renew()
        except (TimeoutError, aioredis.RedisError, OSError):
            held = False
        if held:
            self._renewed_at = self.clock()
        else:
            self._set(False, "lost lock before acting")
        return held

    async def tick(self) -> float:
        """One renewal or acquisition attempt; returns how long to wait before the next one."""
        try:
            if self.is_leader:
                if await self.lock.renew():
                    self._renewed_at = self.clock()
                else:
                    self._set(False, "lock taken or expired")
                return self.interval_s
            remaining = await self.lock.try_acquire()
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if not self.is_leader:  # no cycle runs to report the outage: say why we stand by
                metrics.ERRORS.labels("redis").inc()
                log.warning("autoscaler.leader", leader=False, reason="cannot reach redis", error=error)
            elif self.clock() - self._renewed_at >= self.ttl_s:
                self._set(False, f"redis unreachable for a whole TTL: {error}")
            return self.interval_s
        if remaining == 0:
            self._renewed_at = self.clock()
            self._set(True, "acquired lock")
            return self.interval_s
        return min(self.interval_s, remaining + 0.01)

    async def run(self) -> None:
        """Campaign until cancelled."""
        while True:
            delay = await self.tick()
            await asyncio.sleep(delay)

    async def resign(self) -> None:
        """Release the lock on a graceful stop so a standby takes over at once, not after the TTL."""
        was_leader, self.is_leader = self.is_leader, False
        metrics.IS_LEADER.set(0)
        if was_leader:
            try:
                await self.lock.release()
            except (TimeoutError, aioredis.RedisError, OSError) as exc:
                log.warning("autoscaler.leader", leader=False, reason="release failed", error=str(exc))

    def _set(self, leader: bool, why: str) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        metrics.IS_LEADER.set(1 if leader else 0)
        if leader:
            self.elected.set()  # the runner clears it when it starts the cycle this wakes up
        log.info("autoscaler.leader", leader=leader, reason=why, holder=self.lock.token)


class AlwaysLeader:
    """Leadership for a single sidecar or for tests: always the leader, never asks Redis."""

    is_leader = True

    async def confirm(self) -> bool:
        return True
