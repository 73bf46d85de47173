"""The response cache: keys, entries, singleflight, and the stage that uses them (assembly and replay
of streams are the protocol adapters')."""

from gateway.cache.entry import CacheEntry
from gateway.cache.llmcache import LLMCache, Plan
from gateway.cache.singleflight import Lease

__all__ = ["CacheEntry", "LLMCache", "Lease", "Plan"]
