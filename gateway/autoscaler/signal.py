"""Read the backlog of a target's streams from Redis: the one figure its scaling decision uses.

Without a consumer group the backlog is ``XLEN``. With one, it comes from ``XINFO GROUPS``: ``pending``
(delivered, not yet acknowledged) and, on Redis 7+, ``lag`` (not yet delivered). Redis reports a null
lag after ``XDEL`` of entries the group has not read yet (and older servers have no lag at all), the
case where KEDA's scaler goes blind; we then count the entries after the group's last-delivered ID
ourselves (``XLEN`` minus what the group has already read), server-side and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

import redis.asyncio as aioredis

from gateway.policy.autoscaler import Signal, TargetConfig

if TYPE_CHECKING:
    from gateway.store.topology import Client

COUNT_LIMIT = 10_000
"""The fallback count stops here: far above any sane ``queue_high``, and bounded work for Redis."""

_COUNT_AFTER = """
-- KEYS[1]: the stream; ARGV[1]: first ID to count (inclusive); ARGV[2]: stop after this many.
-- Returns how many entries lie from ARGV[1] to the end, counted in chunks so no reply is built.
local start, counted, limit = ARGV[1], 0, tonumber(ARGV[2])
while counted < limit do
  local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(1000, limit - counted))
  local n = #chunk
  if n == 0 then break end
  counted = counted + n
  local ms, seq = string.match(chunk[n][1], '(%d+)-(%d+)')
  start = ms .. '-' .. (tonumber(seq) + 1)
end
return counted
"""

# One consumer group in the XINFO GROUPS reply (the fields read here); ``lag`` needs Redis 7 and is
# None when Redis cannot tell.
_GroupInfo = TypedDict(
    "_GroupInfo",
    {"name": bytes | str, "pending": int, "last-delivered-id": bytes | str, "lag": NotRequired[int | None]},
)


@dataclass(frozen=True)
class StreamReading:
    """One stream at one moment; ``lag`` and ``pending`` are 0 when there is no group."""

    stream: str
    length: int
    lag: int
    pending: int
    source: str
    """Where ``lag`` came from: ``none`` (no group), ``xinfo``, ``counted`` (null lag), ``no-group``."""

    def figure(self, signal: Signal) -> int:
        """The number this stream contributes to its target's backlog."""
        if signal == "xlen":
            return self.length
        if signal == "lag":
            return self.lag
        if signal == "pending":
            return self.pending
        return self.lag + self.pending


@dataclass(frozen=True)
class Backlog:
    """All streams of one target, read together at ``taken_at``."""

    streams: tuple[StreamReading, ...]
    signal: Signal
    taken_at: float

    @property
    def total(self) -> int:
        return sum(reading.figure(self.signal) for reading in self.streams)


class BacklogReader:
    """Reads streams with one client; the fallback script is registered once."""

    def __init__(self, client: Client) -> None:
        self.redis = client
        self._count_after = client.register_script(_COUNT_AFTER)

    async def read(self, target: TargetConfig, now: float) -> Backlog:
        """Every stream of ``target``; any Redis error propagates (the caller holds, never guesses)."""
        readings = [await self.read_stream(stream, target.group) for stream in target.streams]
        return Backlog(tuple(readings), target.effective_signal, now)

    async def read_stream(self, stream: str, group: str) -> StreamReading:
        length = int(await self.redis.xlen(stream))
        if not group:
            return StreamReading(stream, length, 0, 0, "none")
        info = await self._group_info(stream, group)
        if info is None:  # no stream yet, or the agents have not created their group: nothing was read
            return StreamReading(stream, length, length, 0, "no-group")
        pending = int(info["pending"])
        lag = info.get("lag")
        if lag is not None:
            return StreamReading(stream, length, int(lag), pending, "xinfo")
        after = _next_id(info["last-delivered-id"])
        counted = await self._count_after(keys=[stream], args=[after, COUNT_LIMIT])
        return StreamReading(stream, length, int(counted), pending, "counted")

    async def _group_info(self, stream: str, group: str) -> _GroupInfo | None:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except aioredis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        for info in groups:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                return cast(_GroupInfo, dict(info))
        return None


def _next_id(entry_id: bytes | str) -> str:
    """The smallest stream ID after ``entry_id`` (exclusive ranges need Redis 6.2; this works on 5)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"
