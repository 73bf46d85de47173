"""Shared state behind one small async interface: in-process memory, or Redis for workers and replicas.

Cache entries, budget counters, the routing log and locks all go through :class:`Store`, so every
stage works the same embedded (one process) or scaled out (Redis). Stream names are used as given
(``model_routing_log`` is part of the contract); other keys are prefixed by their owners.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from itertools import count
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from gateway.policy.core import StoreConfig

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
        """Store ``value``; with ``only_if_absent`` nothing is written when the key exists (returns False)."""

    @abstractmethod
    async def delete(self, *keys: str) -> int: ...

    @abstractmethod
    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only while it still holds ``value`` (releasing a lock we own)."""

    @abstractmethod
    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        """Delete every key that starts with ``prefix`` and ends with ``suffix``."""

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

    @abstractmethod
    def budget_ledger(self, prefix: str) -> Ledger:
        """The token-budget ledger in this store (gateway/budget/ledger.py: one meaning, two backends)."""

    async def close(self) -> None:
        return None


class MemoryStore(Store):
    """One process's state: an LRU dict bounded in entries and bytes, with expiries, and bounded logs."""

    kind = "memory"
    _OVERHEAD = 120
    """Approximate bytes Python spends per entry beyond its key and value."""

    def __init__(self, max_items: int = 100_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._logs: dict[str, deque[LogEntry]] = {}
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self._seq = count(1)
        self._ledger: Ledger | None = None

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    def _drop(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self._bytes -= len(key) + len(item[0]) + self._OVERHEAD
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self._drop(key)
        self._data[key] = (value, time.monotonic() + ttl_s if ttl_s else None)
        self._bytes += len(key) + len(value) + self._OVERHEAD
        while len(self._data) > self._max_items or (self._bytes > self._max_bytes and len(self._data) > 1):
            self._drop(next(iter(self._data)))
        return True

    async def delete(self, *keys: str) -> int:
        return sum(self._drop(k) for k in keys)

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        return self._live(key) == value and self._drop(key)

    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        doomed = [k for k in self._data if k.startswith(prefix) and k.endswith(suffix)]
        return sum(self._drop(k) for k in doomed)

    async def append_log(self, stream: str, fields: LogEntry, maxlen: int) -> None:
        log = self._logs.get(stream)
        if log is None or log.maxlen != maxlen:
            log = self._logs[stream] = deque(log or (), maxlen=maxlen)
        log.append({"id": f"{int(time.time() * 1000)}-{next(self._seq)}", **fields})

    async def read_log(self, stream: str, count: int) -> list[LogEntry]:
        log = self._logs.get(stream, deque())
        return list(reversed(log))[:count]

    async def ping(self) -> bool:
        return True

    def budget_ledger(self, prefix: str) -> Ledger:
        from gateway.budget.memory import MemoryLedger

        if self._ledger is None:
            self._ledger = MemoryLedger()
        return self._ledger


_DELETE_IF_EQUAL = """
-- KEYS[1]: the lock key; ARGV[1]: the token its owner wrote. Deletes only our own lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(Store):
    """State shared by every worker and replica through one Redis (redis-py asyncio, pooled)."""

    kind = "redis"

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._delete_if_equal = client.register_script(_DELETE_IF_EQUAL)

    def budget_ledger(self, prefix: str) -> Ledger:
        from gateway.budget.redis_ledger import RedisLedger  # its Lua scripts live beside their KEYS/ARGV

        return RedisLedger(self.redis, prefix)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        return await self._call(self.redis.get(key))  # type: ignore[no-any-return]

    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = max(1, int(ttl_s * 1000)) if ttl_s else None
        return bool(await self._call(self.redis.set(key, value, px=px, nx=only_if_absent)))

    async def delete(self, *keys: str) -> int:
        return int(await self._call(self.redis.delete(*keys))) if keys else 0

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        return bool(await self._call(self._delete_if_equal(keys=[key], args=[value])))

    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        async def scan_and_delete() -> int:
            deleted = 0
            batch: list[bytes] = []
            async for key in self.redis.scan_iter(
                match=_glob_escape(prefix) + "*" + _glob_escape(suffix), count=500
            ):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.redis.unlink(*batch)
            return deleted

        return int(await self._call(scan_and_delete()))

    async def append_log(self, stream: str, fields: LogEntry, maxlen: int) -> None:
        await self._call(self.redis.xadd(stream, fields, maxlen=maxlen, approximate=True))  # type: ignore[arg-type]

    async def append_logs(self, stream: str, entries: list[LogEntry], maxlen: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        await self._call(pipe.execute())

    async def read_log(self, stream: str, count: int) -> list[LogEntry]:
        rows = await self._call(self.redis.xrevrange(stream, count=count))
        return [
            {"id": _text(entry_id), **{_text(k): _text(v) for k, v in data.items()}}
            for entry_id, data in rows
        ]

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.redis.ping()))
        except StoreError:
            return False

    async def close(self) -> None:
        await self.redis.aclose()


def connect_redis(config: StoreConfig, url: str | None = None) -> aioredis.Redis:
    """A pooled asyncio client for ``url`` (password and ``rediss://`` TLS come from the URL).

    The pool blocks (up to the socket timeout) when all connections are busy: the plain pool would fail
    every operation beyond ``max_connections`` concurrent ones at once."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url or config.url,
        max_connections=config.max_connections,
        timeout=config.socket_timeout_s,
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=config.socket_timeout_s,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def open_store(config: StoreConfig) -> Store:
    """The Redis store when a URL is configured, else the in-process memory store."""
    if config.url:
        return RedisStore(connect_redis(config))
    return MemoryStore(config.memory_max_items, config.memory_max_bytes)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
