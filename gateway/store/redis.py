"""State shared by every worker and replica through Redis: one server, a cluster or a Sentinel group.

Keys that one command or script touches together share a ``{hash tag}`` (a budget bucket's keys);
everything else is one key per command, so a cluster spreads it over its nodes. Lua scripts are
registered here, loaded on every primary by the readiness check and re-loaded after ``NOSCRIPT`` (a
restarted or promoted node has an empty script cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException

from gateway.store import metrics
from gateway.store.base import LogEntry, Store, StoreError
from gateway.store.topology import Client, Topology, connect, parse

if TYPE_CHECKING:
    from gateway.budget.ledger import Ledger
    from gateway.policy.core import StoreConfig

T = TypeVar("T")

_DELETE_IF_EQUAL = """
-- KEYS[1]: the lock key; ARGV[1]: the token its owner wrote. Deletes only our own lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SET_IF_ABSENT = """
-- KEYS[1]; ARGV[1] value, ARGV[2] ttl ms ('' = none). 1 when written now, or when the key already holds
-- this very value (our own write, sent again after its answer was lost); else 0.
local written
if ARGV[2] == '' then
  written = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  written = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if written or redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
_LOOKUP_OR_LOCK = """
-- KEYS[1] the entry, KEYS[2] its lock (one hash tag); ARGV[1] our token, ARGV[2] lock ttl ms.
-- {1, entry} when stored; else {0, 1} when the lock is ours now (or already was), {0, 0} when not.
local entry = redis.call('GET', KEYS[1])
if entry then return {1, entry} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[2]) == ARGV[1] then
  return {0, 1}
end
return {0, 0}
"""
_STORE_AND_UNLOCK = """
-- KEYS[1] the entry, KEYS[2] its lock (one hash tag); ARGV[1] '1' to write ARGV[2] with ttl ARGV[3] ms
-- ('' = none), ARGV[4] our token: the lock is deleted only while it is still ours.
if ARGV[1] == '1' then
  if ARGV[3] == '' then
    redis.call('SET', KEYS[1], ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
return 1
"""
_DOWN = (aioredis.ConnectionError, aioredis.TimeoutError, TimeoutError, OSError)
"""Failures that mean the store cannot be reached (as opposed to a command it refused)."""
CLUSTER_SLOTS = 16384


class RedisStore(Store):
    """The shared store on a redis-py asyncio client (pooled; retries connection errors itself)."""

    kind = "redis"

    def __init__(self, client: Client, topology: Topology | None = None, max_connections: int = 64) -> None:
        self.redis = client
        self.topology = topology or Topology("single")
        self._scripts: list[AsyncScript] = []
        # A cluster client fails a command at once when its node's pool is busy; wait instead, like the
        # blocking pool of one server or Sentinel does.
        cluster = self.topology.mode == "cluster"
        self._slots = asyncio.Semaphore(max_connections) if cluster else contextlib.nullcontext()
        self._delete_if_equal = self.script(_DELETE_IF_EQUAL)
        self._set_if_absent = self.script(_SET_IF_ABSENT)
        self._lookup_or_lock = self.script(_LOOKUP_OR_LOCK)
        self._store_and_unlock = self.script(_STORE_AND_UNLOCK)

    async def timed(self, operation: str, call: Awaitable[T]) -> T:
        """Await one store call: latency and ``gateway_store_up`` recorded, a failure a StoreError."""
        started = time.perf_counter()
        try:
            async with self._slots:
                result = await call
        except (*_DOWN, aioredis.RedisError, RedisClusterException) as exc:
            if isinstance(exc, _DOWN):
                metrics.STORE_UP.set(0)
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        metrics.STORE_SECONDS.labels(operation).observe(time.perf_counter() - started)
        metrics.STORE_UP.set(1)
        return result

    def script(self, source: str) -> AsyncScript:
        """Register a Lua script: run by SHA, re-sent after NOSCRIPT, loaded by :meth:`check`."""
        script = self.redis.register_script(source)
        self._scripts.append(script)
        return script

    def budget_ledger(self, prefix: str) -> Ledger:
        from gateway.budget.redis_ledger import RedisLedger  # its Lua scripts live beside their KEYS/ARGV

        return RedisLedger(self, prefix)

    async def get(self, key: str) -> bytes | None:
        # The client does not decode responses (topology.py): a value is bytes.
        return cast("bytes | None", await self.timed("get", self.redis.get(key)))

    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = max(1, int(ttl_s * 1000)) if ttl_s else None
        if only_if_absent:  # a script, so that a retried lock write finds its own value and succeeds
            args = [value, "" if px is None else px]
            return bool(await self.timed("set", self._set_if_absent(keys=[key], args=args)))
        return bool(await self.timed("set", self.redis.set(key, value, px=px)))

    async def lookup_or_lock(
        self, key: str, lock: str, token: bytes, lock_ttl_s: float
    ) -> tuple[bytes | None, bool]:
        if not self._one_slot(key, lock):
            return await super().lookup_or_lock(key, lock, token, lock_ttl_s)
        args: list[bytes | int] = [token, max(1, int(lock_ttl_s * 1000))]
        found, value = await self.timed("lookup_or_lock", self._lookup_or_lock(keys=[key, lock], args=args))
        return (value, False) if found else (None, bool(value))

    async def store_and_unlock(
        self, key: str, value: bytes | None, ttl_s: float | None, lock: str | None, token: bytes
    ) -> None:
        if lock is None or value is None or not self._one_slot(key, lock):
            return await super().store_and_unlock(key, value, ttl_s, lock, token)
        px = max(1, int(ttl_s * 1000)) if ttl_s else ""
        call = self._store_and_unlock(keys=[key, lock], args=["1", value, px, token])
        await self.timed("store_and_unlock", call)

    def _one_slot(self, *keys: str) -> bool:
        """Whether one script may touch ``keys`` (always, except on a cluster when their slots differ:
        then they are sent one command each)."""
        if self.topology.mode != "cluster":
            return True
        return len({self.redis.keyslot(key) for key in keys}) == 1  # type: ignore[union-attr]

    async def delete(self, *keys: str) -> int:
        return int(await self.timed("delete", self.redis.delete(*keys))) if keys else 0

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        return bool(await self.timed("delete", self._delete_if_equal(keys=[key], args=[value])))

    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        async def scan_and_delete() -> int:  # a cluster client scans every primary
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

        return int(await self.timed("scan", scan_and_delete()))

    async def append_log(self, stream: str, fields: LogEntry, maxlen: int) -> None:
        await self.timed("log_append", self.redis.xadd(stream, fields, maxlen=maxlen, approximate=True))  # type: ignore[arg-type]

    async def append_logs(self, stream: str, entries: list[LogEntry], maxlen: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        await self.timed("log_append", pipe.execute())

    async def read_log(self, stream: str, count: int) -> list[LogEntry]:
        # XREVRANGE gives each entry's id and fields (redis-py types both as optional).
        rows = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            await self.timed("log_read", self.redis.xrevrange(stream, count=count)),
        )
        return [
            {"id": _text(entry_id), **{_text(k): _text(v) for k, v in data.items()}}
            for entry_id, data in rows
        ]

    async def ping(self) -> bool:
        try:
            return bool(await self.timed("ping", self.redis.ping()))
        except StoreError:
            return False

    async def check(self) -> list[str]:
        """The topology serves every key (cluster: all slots; sentinel: a known master; one server: a
        writable primary) and every script is loaded."""
        try:
            problems = await self._topology_problems()
            if not problems:
                await self._load_scripts()
        except StoreError as exc:
            problems = [f"{self.topology.describe()}: {exc}"]
        metrics.STORE_UP.set(0 if problems else 1)
        return problems

    async def _topology_problems(self) -> list[str]:
        mode = self.topology.mode
        if mode == "cluster":
            cluster = cast(aioredis.RedisCluster, self.redis)  # connect() made a cluster client
            info = await self.timed("check", cluster.cluster_info())
            served = int(info.get("cluster_slots_ok", 0))
            if info.get("cluster_state") != "ok" or served < CLUSTER_SLOTS:
                return [f"Redis Cluster state is {info.get('cluster_state')}: {served} of 16384 slots served"]
            await self.timed("check", cluster.ping(target_nodes=cluster.ALL_NODES))
            return []
        if mode == "sentinel":
            # connect() made a client on a Sentinel pool
            pool = cast(SentinelConnectionPool, cast(aioredis.Redis, self.redis).connection_pool)
            try:
                await self.timed("check", pool.sentinel_manager.discover_master(self.topology.master))
            except StoreError as exc:
                return [f"no sentinel knows a master named '{self.topology.master}': {exc}"]
        info = await self.timed("check", self.redis.info("cluster"))
        problems = []
        if int(info.get("cluster_enabled", 0)):
            problems.append("the server is a Redis Cluster node: set store.mode: cluster")
        replication = await self.timed("check", self.redis.info("replication"))
        if replication.get("role") != "master":
            problems.append("the server is a read-only replica: point store.url at the primary (or Sentinel)")
        return problems

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD on every primary (idempotent), so no request waits for a NOSCRIPT round trip;
        fails when an ACL forbids scripts."""
        for script in self._scripts:
            script.sha = await self.timed("check", self.redis.script_load(script.script))

    async def close(self) -> None:
        await self.redis.aclose()
        pool = getattr(self.redis, "connection_pool", None)  # a cluster client has a pool per node
        manager = getattr(pool, "sentinel_manager", None)  # Sentinel: its own links to the sentinels
        for sentinel in manager.sentinels if manager is not None else ():
            await sentinel.aclose()


def open_redis(config: StoreConfig) -> RedisStore:
    """The shared store on the topology ``config`` names."""
    return RedisStore(connect(config), parse(config), config.max_connections)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
