"""What a cache entry holds: always a complete non-streamed answer (the provider's JSON).

A streamed miss is assembled into that shape as it is relayed, a streamed hit is replayed from it as
proper SSE events, both by the request's protocol adapter (``assembler``, ``replay``). So an entry
stored from a stream serves plain requests and the reverse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class CacheEntry:
    created: float
    body: bytes

    def encode(self) -> bytes:
        return orjson.dumps({"created": self.created}) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CacheEntry | None:
        """The stored entry, or None for bytes that are not one (then treated as absent and replaced)."""
        header, _, body = raw.partition(b"\n")
        try:
            return cls(float(orjson.loads(header)["created"]), body)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)
