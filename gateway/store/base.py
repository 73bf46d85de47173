"""The interface every stage may ask of shared state, whichever backend holds it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.budget.ledger import Ledger

LogEntry = dict[str, str]


class StoreError(Exception):
    """The store could not be reached or answered an error; callers decide whether to fail open."""


class Store(ABC):
    """What every stage may ask of shared state."""

    kind: str

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store ``value``; with ``only_if_absent`` nothing is written when the key exists (returns False),
        unless it already holds this very ``value``: a write sent again after its answer was lost (a lock
        token is unique to its owner) still succeeds."""

    @abstractmethod
    async def delete(self, *keys: str) -> int: ...

    @abstractmethod
    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only while it still holds ``value`` (releasing a lock we own)."""

    @abstractmethod
    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        """Delete every key that starts with ``prefix`` and ends with ``suffix``."""

    async def lookup_or_lock(
        self, key: str, lock: str, token: bytes, lock_ttl_s: float
    ) -> tuple[bytes | None, bool]:
        """``key``'s value if stored; else take ``lock`` for ``token`` (True when taken, or already ours).

        One round trip on Redis (a script: ``key`` and ``lock`` must share a hash tag on a cluster), so
        a cache miss pays one trip before the provider call, not a lookup and a lock."""
        value = await self.get(key)
        if value is not None:
            return value, False
        return None, await self.set(lock, token, ttl_s=lock_ttl_s, only_if_absent=True)

    async def store_and_unlock(
        self, key: str, value: bytes | None, ttl_s: float | None, lock: str | None, token: bytes
    ) -> None:
        """Write ``value`` (None: nothing) and release ``lock`` if ``token`` still holds it (None: no
        lock): the one round trip after the provider call."""
        if value is not None:
            await self.set(key, value, ttl_s=ttl_s)
        if lock is not None:
            await self.delete_if_equal(lock, token)

    @abstractmethod
    async def append_log(self, stream: str, fields: LogEntry, maxlen: int) -> None:
        """Append to a capped log (a Redis stream with approximate MAXLEN)."""

    async def append_logs(self, stream: str, entries: list[LogEntry], maxlen: int) -> None:
        """Append several entries at once (one round trip on Redis)."""
        for fields in entries:
            await self.append_log(stream, fields, maxlen)

    @abstractmethod
    async def read_log(self, stream: str, count: int) -> list[LogEntry]:
        """The newest ``count`` entries, newest first, each with its ``id``."""

    @abstractmethod
    async def ping(self) -> bool: ...

    async def check(self) -> list[str]:
        """What keeps requests from being served now, in words an operator can act on (empty: ready)."""
        return [] if await self.ping() else [f"the {self.kind} store does not answer"]

    @abstractmethod
    def budget_ledger(self, prefix: str) -> Ledger:
        """The token-budget ledger in this store (gateway/budget/ledger.py: one meaning, two backends)."""

    async def close(self) -> None:
        return None
