"""Identical requests in flight at once reach the provider once.

Inside a process, followers await the leader's future. Across workers and replicas, the leader holds a
short lock in the store and followers poll for the stored answer. When a leader fails (error, truncated
stream, crash), its followers are woken with nothing and one of them takes over, so they do not all fail.
Store trouble never blocks a request: it then simply goes to the provider itself.
"""

from __future__ import annotations

import asyncio
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

    def lock_key(self, key: str) -> str:
        """The lock beside the entry: ``{key}`` is the hash tag both share, so one script on a cluster."""
        return f"{self.lock_prefix}{{{key}}}"

    async def join(self, key: str, entry_key: str, max_age_s: float | None = None) -> CacheEntry | Lease:
        """Wait for an identical request in flight here, or look the answer up and take the lock in one
        store round trip: a stored answer (no older than ``max_age_s``), or the lease to produce it.

        Store trouble on that first trip raises StoreError (the cache is bypassed); once another worker
        is known to lead, trouble while waiting just means calling the provider without the lock."""
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
            found = await self._lookup_or_lock(lease, entry_key, max_age_s)
            if found is not None:
                return found
            return await self._wait_for_leader(lease, entry_key, max_age_s, deadline)
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

    async def _lookup_or_lock(
        self, lease: Lease, entry_key: str, max_age_s: float | None
    ) -> CacheEntry | Lease | None:
        """One try: the fresh stored entry, the lease once locked, or None while another leads."""
        lock = self.lock_key(lease.key)
        raw, locked = await self.store.lookup_or_lock(entry_key, lock, lease.token, self.lock_ttl_s)
        if raw is not None:
            entry = CacheEntry.decode(raw)
            if entry is not None and (max_age_s is None or entry.age <= max_age_s):
                self._finish(lease, entry)
                return entry
            # Too old for this request, or unreadable: produce it anew, under the lock.
            locked = await self.store.set(lock, lease.token, ttl_s=self.lock_ttl_s, only_if_absent=True)
        if locked:
            lease.locked = True
            return lease
        return None

    async def _wait_for_leader(
        self, lease: Lease, entry_key: str, max_age_s: float | None, deadline: float
    ) -> CacheEntry | Lease:
        """Another worker or replica leads: poll for its answer, or for its lock to go (then lead)."""
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(self.poll_s)
                found = await self._lookup_or_lock(lease, entry_key, max_age_s)
                if found is not None:
                    return found
        except StoreError:
            pass
        return lease  # waited long enough (or the store failed): call the provider without the lock

    def release(self, lease: Lease, entry: CacheEntry | None) -> str | None:
        """Wake local followers with the answer (None: one of them retries); the lock to drop in the
        store, if this lease holds one (the caller drops it in the same trip that stores the answer)."""
        self._finish(lease, entry)
        if not lease.locked:
            return None
        lease.locked = False
        return self.lock_key(lease.key)

    def _finish(self, lease: Lease, entry: CacheEntry | None) -> None:
        if lease.published:
            return
        lease.published = True
        if self._local.get(lease.key) is lease.future:
            del self._local[lease.key]
        if not lease.future.done():
            lease.future.set_result(entry)
