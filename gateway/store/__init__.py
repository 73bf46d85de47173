"""Shared state behind one small async interface: in-process memory, or Redis for workers and replicas.

Cache entries, budget counters, the routing log and locks all go through :class:`Store`, so every
stage works the same embedded (one process) or scaled out (Redis: one server, a cluster or Sentinel).
Stream names are used as given (``model_routing_log`` is part of the contract); other keys are
prefixed by their owners.
"""

from __future__ import annotations

from gateway.policy.core import StoreConfig
from gateway.store.base import LogEntry, Store, StoreError
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore, _glob_escape, open_redis
from gateway.store.topology import connect as connect_redis


def open_store(config: StoreConfig) -> Store:
    """The Redis store when a URL is configured, else the in-process memory store."""
    if config.url:
        return open_redis(config)
    return MemoryStore(config.memory_max_items, config.memory_max_bytes)


__all__ = [
    "LogEntry",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreError",
    "_glob_escape",
    "connect_redis",
    "open_redis",
    "open_store",
]
