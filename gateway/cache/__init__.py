"""The response cache: keys, entries (assembly and replay), singleflight, and the stage that uses them."""

from gateway.cache.entry import CacheEntry, StreamAssembler, replay
from gateway.cache.llmcache import LLMCache, Plan
from gateway.cache.singleflight import Lease

__all__ = ["CacheEntry", "LLMCache", "Lease", "Plan", "StreamAssembler", "replay"]
