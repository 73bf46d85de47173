"""Identical requests in flight at once reach the provider once.

Inside a process, followers await the leader's future. Across workers and replicas, the leader holds a
short lock in the store and followers poll for the stored answer. When a leader fails (error, truncated
stream, crash), its followers are woken with nothing and one of them takes over, so they do not all fail.
Store trouble never blocks a request: it then simply goes to the provider itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

from gateway.cache.entry import CacheEntry
from gateway.store import Store, StoreError


@dataclass(slots=True)
class Lease:
    """The right (and duty) to call the provider for ``key`` and then publish the outcome."""

    key: str
    token: bytes
    future: asyncio.Future[CacheEntry | None]
    locked: bool = False
    published: bool = field(default=False)


class SingleFlight:
    def __init__(
        self, store: Store, lock_prefix: str, lock_ttl_s: float, wait_s: float, poll_s: float
    ) -> None:
        self.store = store
        self.lock_prefix = lock_prefix
        self.lock_ttl_s = lock_ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._local: dict[str, asyncio.Future[CacheEntry | None]] = {}

    async def join(self, key: str, entry_key: str) -> CacheEntry | Lease:
        """Wait for an identical request in flight, or become the one that calls the provider."""
        deadline = time.monotonic() + self.wait_s
        while True:
            pending = self._local.get(key)
            if pending is None:
                break
            try:
                entry = await asyncio.wait_for(asyncio.shield(pending), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return self.alone(key)
            if entry is not None:
                return entry
            # The leader failed: loop, and the first follower to get here takes over.
        lease = self._lease(key)
        try:
            return await self._lock_or_wait(lease, entry_key, deadline)
        except BaseException:
            self._finish(lease, None)
            raise

    def alone(self, key: str) -> Lease:
        """A lease nobody waits for and no lock guards (a request that must not share an answer)."""
        return self._lease(key, lead_alone=True)

    def _lease(self, key: str, lead_alone: bool = False) -> Lease:
        future: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()
        if not lead_alone:
            self._local[key] = future
        return Lease(key, os.urandom(12).hex().encode(), future)

    async def _lock_or_wait(self, lease: Lease, entry_key: str, deadline: float) -> CacheEntry | Lease:
        lock = self.lock_prefix + lease.key
        try:
            while True:
                if await self.store.set(lock, lease.token, ttl_s=self.lock_ttl_s, only_if_absent=True):
                    lease.locked = True
                    return lease
                # Another worker or replica leads: wait for its answer, or for its lock to go.
                while time.monotonic() < deadline:
                    await asyncio.sleep(self.poll_s)
                    raw = await self.store.get(entry_key)
                    entry = CacheEntry.decode(raw) if raw is not None else None
                    if entry is not None:
                        self._finish(lease, entry)
                        return entry
                    if await self.store.get(lock) is None:
                        break
                else:
                    return lease  # waited long enough: call the provider without the lock
        except StoreError:
            return lease

    async def publish(self, lease: Lease, entry: CacheEntry | None) -> None:
        """Wake local followers with the answer (None: one of them retries) and drop the lock."""
        self._finish(lease, entry)
        if lease.locked:
            lease.locked = False
            with contextlib.suppress(StoreError):  # otherwise the lock's TTL ends it
                await self.store.delete_if_equal(self.lock_prefix + lease.key, lease.token)

    def _finish(self, lease: Lease, entry: CacheEntry | None) -> None:
        if lease.published:
            return
        lease.published = True
        if self._local.get(lease.key) is lease.future:
            del self._local[lease.key]
        if not lease.future.done():
            lease.future.set_result(entry)
