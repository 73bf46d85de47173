"""The ticket primitive in Redis: each step is one Lua script, registered once (EVALSHA afterwards).

Slot rule (Redis Cluster): a script may only touch keys of one hash slot, and a consume must see every
bucket of a request at once to be all or nothing. So every ticket key carries one hash tag,
``{<prefix>tickets}``: all limit state lives on one shard. That is the price of atomic admission across
scopes; one shard runs these short scripts far faster than a gateway fleet sends requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store import StoreError
from gateway.tickets.base import Bucket, Grant, Level, TicketStore

_COMMON = """
local function expire(z, h, edge)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', edge)
  if #old == 0 then return end
  local freed = 0
  for _, t in ipairs(old) do freed = freed + (tonumber(redis.call('HGET', h, t)) or 0) end
  for i = 1, #old, 500 do redis.call('HDEL', h, unpack(old, i, math.min(i + 499, #old))) end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', edge)
  redis.call('HINCRBY', h, '_sum', -freed)
end
"""

CONSUME = (
    _COMMON
    + """
-- KEYS[1]: the gate flag (refuse while it exists); KEYS[2i], KEYS[2i+1]: bucket i's ZSET
--   (ticket -> time taken) and HASH (ticket -> amount, '_sum' -> total in the window).
-- ARGV[1] now (s), ARGV[2] ticket id, ARGV[3] 1 to check the gate;
--   ARGV[4+3(i-1)], +1, +2: bucket i's capacity, window_s, amount.
-- Returns {ok, refused index (0-based, -1), retry_after_s, gate value, then remaining, reset_s per bucket}.
local now, ticket = tonumber(ARGV[1]), ARGV[2]
local n = (#KEYS - 1) / 2
local sums, caps, windows, amounts = {}, {}, {}, {}
for i = 1, n do
  local z, h = KEYS[2 * i], KEYS[2 * i + 1]
  caps[i], windows[i] = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  amounts[i] = tonumber(ARGV[3 + 3 * i])
  expire(z, h, now - windows[i])
  sums[i] = tonumber(redis.call('HGET', h, '_sum')) or 0
end
local function levels(out)
  for i = 1, n do
    local newest = redis.call('ZRANGE', KEYS[2 * i], -1, -1, 'WITHSCORES')
    local reset = 0
    if #newest == 2 then reset = math.max(0, tonumber(newest[2]) + windows[i] - now) end
    out[#out + 1] = math.max(0, caps[i] - sums[i])
    out[#out + 1] = tostring(reset)
  end
  return out
end
if ARGV[3] == '1' then
  local gate = redis.call('GET', KEYS[1])
  if gate then return levels({0, -1, '0', gate}) end
end
for i = 1, n do
  if amounts[i] > 0 and sums[i] + amounts[i] > caps[i] then
    local retry = -1
    if amounts[i] <= caps[i] then
      local need, freed = sums[i] + amounts[i] - caps[i], 0
      local rows = redis.call('ZRANGE', KEYS[2 * i], 0, -1, 'WITHSCORES')
      for j = 1, #rows, 2 do
        freed = freed + (tonumber(redis.call('HGET', KEYS[2 * i + 1], rows[j])) or 0)
        if freed >= need then retry = math.max(0, tonumber(rows[j + 1]) + windows[i] - now); break end
      end
      if retry < 0 then retry = 0 end
    end
    return levels({0, i - 1, tostring(retry), false})
  end
end
for i = 1, n do
  if amounts[i] > 0 then
    local z, h = KEYS[2 * i], KEYS[2 * i + 1]
    redis.call('ZADD', z, now, ticket)
    redis.call('HSET', h, ticket, amounts[i])
    sums[i] = redis.call('HINCRBY', h, '_sum', amounts[i])
    local ttl = math.ceil(windows[i] * 1000) + 1000
    redis.call('PEXPIRE', z, ttl); redis.call('PEXPIRE', h, ttl)
  end
end
return levels({1, -1, '0', false})
"""
)

SETTLE = (
    _COMMON
    + """
-- KEYS[2i-1], KEYS[2i]: bucket i's ZSET and HASH; ARGV[1] now, ARGV[2] ticket id,
--   ARGV[3+2(i-1)], +1: bucket i's window_s and the ticket's real amount (0 returns the ticket).
local now, ticket = tonumber(ARGV[1]), ARGV[2]
for i = 1, #KEYS / 2 do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local amount = tonumber(ARGV[2 + 2 * i])
  expire(z, h, now - tonumber(ARGV[1 + 2 * i]))
  local old = tonumber(redis.call('HGET', h, ticket))
  if old then
    redis.call('HINCRBY', h, '_sum', amount - old)
    if amount == 0 then
      redis.call('HDEL', h, ticket); redis.call('ZREM', z, ticket)
    else
      redis.call('HSET', h, ticket, amount)
    end
  end
end
return 1
"""
)


class RedisTickets(TicketStore):
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.tag = "{" + prefix + "tickets}:"
        self._consume = client.register_script(CONSUME)
        self._settle = client.register_script(SETTLE)

    def _keys(self, bucket: Bucket) -> list[str]:
        return [f"{self.tag}{bucket.key}:z", f"{self.tag}{bucket.key}:h"]

    async def consume(
        self, ticket: str, buckets: Sequence[Bucket], now: float, gate: str | None = None
    ) -> Grant:
        keys = [self.tag + "flag:" + (gate or "")]
        args: list[Any] = [repr(now), ticket, "1" if gate is not None else "0"]
        for bucket in buckets:
            keys += self._keys(bucket)
            args += [bucket.capacity, repr(float(bucket.window_s)), bucket.amount]
        reply = await self._run(self._consume, keys, args)
        levels = tuple(
            Level(bucket.capacity, int(reply[4 + 2 * i]), float(reply[5 + 2 * i]))
            for i, bucket in enumerate(buckets)
        )
        gate_value = reply[3].decode() if isinstance(reply[3], bytes) else None
        return Grant(bool(reply[0]), levels, int(reply[1]), float(reply[2]), gate_value)

    async def settle(self, ticket: str, buckets: Sequence[Bucket], now: float) -> None:
        if not buckets:
            return
        keys: list[str] = []
        args: list[Any] = [repr(now), ticket]
        for bucket in buckets:
            keys += self._keys(bucket)
            args += [repr(float(bucket.window_s)), bucket.amount]
        await self._run(self._settle, keys, args)

    async def raise_flag(self, key: str, value: str) -> bool:
        return bool(await self._call(self.redis.set(self.tag + "flag:" + key, value, nx=True)))

    async def clear_flag(self, key: str) -> bool:
        return bool(await self._call(self.redis.delete(self.tag + "flag:" + key)))

    async def flags(self, prefix: str) -> dict[str, str]:
        start = self.tag + "flag:"
        found: dict[str, str] = {}
        try:
            async for key in self.redis.scan_iter(match=_glob(start + prefix) + "*", count=500):
                value = await self.redis.get(key)
                if value is not None:
                    text = value.decode() if isinstance(value, bytes) else str(value)
                    found[key.decode()[len(start) :]] = text
        except (RedisError, OSError) as exc:
            raise StoreError(str(exc)) from exc
        return found

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return await self._call(script(keys=keys, args=args))

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise StoreError(str(exc)) from exc


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
