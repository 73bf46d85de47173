"""The response cache, replayed: which requests another ``cache`` section would have answered from the
store, by the recorded content hashes and arrival times.

The gateway's own ``terms`` and ``scope_for`` decide whether a request may use the cache and with which
TTL and scope; this module only remembers entries. An entry serves identical requests from the moment
its producer arrived (they would have waited for it in flight: singleflight) until its TTL ends after
the producer finished. Evictions (Redis memory pressure, ``max_entry_bytes``) are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.context import Usage

Key = tuple[str, str, str]
"""(content hash, model called, cache scope): the parts of the gateway's cache key that can change."""


@dataclass(frozen=True, slots=True)
class Entry:
    since: float
    """The producer's arrival: identical requests from then on get this answer."""
    stored: float
    expires: float
    usage: Usage


class CacheReplay:
    def __init__(self) -> None:
        self._entries: dict[Key, Entry] = {}

    def lookup(self, key: Key, at: float, max_age_s: float | None) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None or not entry.since <= at <= entry.expires:
            return None
        if max_age_s is not None and at - entry.stored > max_age_s:
            return None
        return entry

    def store(self, key: Key, arrival: float, finished: float, ttl_s: float, usage: Usage) -> None:
        self._entries[key] = Entry(arrival, finished, finished + ttl_s, usage)
