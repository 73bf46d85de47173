"""The ledger in Redis: each operation is one Lua script, so check-and-reserve is a single atomic step for
every worker and replica. A bucket's five keys share the ``{sprint:ID}`` hash tag (Redis Cluster safe):

    KEYS[1]  acct    hash  used / res / saved / adj (sprint totals), used:AGENT ..., flag:KIND:AGENT
    KEYS[2]  holds   hash  hold id -> "TOKENS AGENT"
    KEYS[3]  expiry  zset  hold id scored by its expiry (ms, Redis server clock)
    KEYS[4]  seats   set   agents holding a seat (sprints that give a number of agents)
    KEYS[5]  done    zset  hold ids already committed, kept until their hold would have expired + 60 s

Expired holds are purged at the start of every script, which is what makes a dead gateway's
reservations come back. Reserve and commit are idempotent per hold id, so a call whose answer was lost
(a timeout, a failover) can be sent again: a second reserve finds its hold, a second commit finds its id
in ``done``; neither counts twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.budget.ledger import Accounts, Ask, Balance, Charge, Ledger, Settled, Verdict

if TYPE_CHECKING:
    from gateway.store.redis import RedisStore

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local acct, holds, expiry, seats, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(name) return tonumber(redis.call('HGET', acct, name) or '0') end
local function add(kind, agent, tokens)
  if tokens == 0 then return end  -- Lua prints -0, which HINCRBY rejects
  redis.call('HINCRBY', acct, kind .. ':' .. agent, tokens)
  redis.call('HINCRBY', acct, kind, tokens)
end
local function release(id)
  local hold = redis.call('HGET', holds, id)
  if not hold then return end
  local sep = string.find(hold, ' ', 1, true)
  add('res', string.sub(hold, sep + 1), -tonumber(string.sub(hold, 1, sep - 1)))
  redis.call('HDEL', holds, id)
  redis.call('ZREM', expiry, id)
end
local function expire_at(ms)
  if ms ~= '0' then
    for _, key in ipairs(KEYS) do redis.call('PEXPIREAT', key, ms) end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do release(id) end
redis.call('ZREMRANGEBYSCORE', done, '-inf', now)
"""

_RESERVE = (
    _PRELUDE
    + """
-- ARGV: 1 agent, 2 hold id, 3 tokens, 4 agent budget, 5 sprint budget, 6 block_at, 7 pause_at (0: off),
--       8 critical (1/0), 9 borrow (1/0), 10 seats (0: named agents), 11 budget without a seat (0: refused),
--       12 ttl ms, 13 expire-at ms (0: never)
-- Returns {status, agent used, agent reserved, agent limit, sprint used, sprint reserved, sprint limit,
--          borrowed, first block, agent budget before adjustment}.
local agent, id, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local base, status = tonumber(ARGV[4]), 'ok'
local nseats = tonumber(ARGV[10])
local again = redis.call('HEXISTS', holds, id) == 1  -- sent again: the first one reserved already
if nseats > 0 and redis.call('SISMEMBER', seats, agent) == 0 then
  if redis.call('SCARD', seats) < nseats then
    redis.call('SADD', seats, agent)
  else
    base = tonumber(ARGV[11])
    if base == 0 then status = 'unknown' end
  end
end
local limit = base + num('adj:' .. agent)
local sprint_limit = tonumber(ARGV[5]) + num('adj')
local a_used, a_res, s_used, s_res = num('used:' .. agent), num('res:' .. agent), num('used'), num('res')
local block_at, pause_at = tonumber(ARGV[6]), tonumber(ARGV[7])
local critical, borrowed, first = ARGV[8] == '1', 0, 0
if status == 'ok' and not again then
  local sprint_load, agent_load = s_used + s_res + tokens, a_used + a_res + tokens
  if sprint_load > math.floor(sprint_limit * block_at) then
    status = 'sprint'
  elseif not critical and pause_at > 0 and sprint_load > math.floor(sprint_limit * pause_at) then
    status = 'paused'
  elseif agent_load > math.floor(limit * block_at) then
    if critical and ARGV[9] == '1' then borrowed = 1 else status = 'agent' end
  end
end
if status == 'agent' or status == 'sprint' then
  first = redis.call('HSETNX', acct, 'flag:block:' .. agent, 1)
end
if status == 'ok' and not again then
  redis.call('HSET', holds, id, tokens .. ' ' .. agent)
  redis.call('ZADD', expiry, now + tonumber(ARGV[12]), id)
  add('res', agent, tokens)
  a_res, s_res = a_res + tokens, s_res + tokens
  expire_at(ARGV[13])
end
return {status, a_used, a_res, limit, s_used, s_res, sprint_limit, borrowed, first, base}
"""
)

_COMMIT = (
    _PRELUDE
    + """
-- ARGV: 1 agent, 2 hold id, 3 tokens used, 4 tokens saved, 5 agent budget, 6 sprint budget,
--       7 alert_at, 8 block_at, 9 low_remaining, 10 expire-at ms (0: never)
-- Returns {agent used, agent reserved, agent limit, sprint used, sprint reserved, sprint limit, fired...}.
local agent, id = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', done, id) then  -- else sent again: counted already, report only
  local held = tonumber(redis.call('ZSCORE', expiry, id) or now)
  release(id)
  add('used', agent, tonumber(ARGV[3]))
  add('saved', agent, tonumber(ARGV[4]))
  redis.call('ZADD', done, math.max(held, now) + 60000, id)
end
local limit = tonumber(ARGV[5]) + num('adj:' .. agent)
local sprint_limit = tonumber(ARGV[6]) + num('adj')
local a_used, s_used = num('used:' .. agent), num('used')
local out = {a_used, num('res:' .. agent), limit, s_used, num('res'), sprint_limit}
if a_used >= tonumber(ARGV[7]) * limit and redis.call('HSETNX', acct, 'flag:alert:' .. agent, 1) == 1 then
  table.insert(out, 'alert')
end
if a_used >= tonumber(ARGV[8]) * limit and redis.call('HSETNX', acct, 'flag:block:' .. agent, 1) == 1 then
  table.insert(out, 'block')
end
local low = sprint_limit - s_used < tonumber(ARGV[9]) * sprint_limit
if low and redis.call('HSETNX', acct, 'flag:low', 1) == 1 then
  table.insert(out, 'low')
end
expire_at(ARGV[10])
return out
"""
)

_SNAPSHOT = (
    _PRELUDE
    + """
-- Returns {acct as a flat field/value list, seat members}.
return {redis.call('HGETALL', acct), redis.call('SMEMBERS', seats)}
"""
)

_RESET = (
    _PRELUDE
    + """
-- ARGV: 1 agent ('' for the whole bucket). Live reservations (res fields, holds) are kept.
local agent = ARGV[1]
if agent == '' then
  local fields = redis.call('HKEYS', acct)
  for _, name in ipairs(fields) do
    if string.sub(name, 1, 3) ~= 'res' then redis.call('HDEL', acct, name) end
  end
  redis.call('DEL', seats)
  return 1
end
for _, kind in ipairs({'used', 'saved'}) do
  redis.call('HINCRBY', acct, kind, 0 - num(kind .. ':' .. agent))
end
redis.call('HDEL', acct, 'used:' .. agent, 'saved:' .. agent, 'adj:' .. agent,
           'flag:alert:' .. agent, 'flag:block:' .. agent)
return 1
"""
)

_ADJUST = (
    _PRELUDE
    + """
-- ARGV: 1 field (adj or adj:AGENT), 2 tokens, 3 expire-at ms (0: never)
redis.call('HINCRBY', acct, ARGV[1], tonumber(ARGV[2]))
expire_at(ARGV[3])
return 1
"""
)


def _ms(at: float | None) -> int:
    return 0 if at is None else int(at * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLedger(Ledger):
    def __init__(self, store: RedisStore, prefix: str) -> None:
        self._prefix = f"{prefix}budget:"
        self._store = store
        self._reserve = store.script(_RESERVE)
        self._commit = store.script(_COMMIT)
        self._snapshot = store.script(_SNAPSHOT)
        self._reset = store.script(_RESET)
        self._adjust = store.script(_ADJUST)

    def keys(self, bucket: str) -> list[str]:
        base = self._prefix + bucket
        return [f"{base}:{name}" for name in ("acct", "holds", "expiry", "seats", "done")]

    async def _run(self, script: Any, bucket: str, *args: object) -> Any:
        return await self._store.timed("budget", script(keys=self.keys(bucket), args=list(args)))

    async def reserve(self, bucket: str, ask: Ask) -> Verdict:
        out = await self._run(
            self._reserve,
            bucket,
            ask.agent,
            ask.hold_id,
            ask.tokens,
            ask.agent_tokens,
            ask.sprint_tokens,
            repr(ask.block_at),
            repr(ask.pause_at),
            int(ask.critical),
            int(ask.borrow),
            ask.seats,
            ask.unknown_tokens,
            max(1, int(ask.ttl_s * 1000)),
            _ms(ask.expire_at),
        )
        balance = Balance(*(int(v) for v in out[1:7]))
        return Verdict(_text(out[0]), balance, bool(out[7]), bool(out[8]), int(out[9]))

    async def commit(self, bucket: str, charge: Charge) -> Settled:
        out = await self._run(
            self._commit,
            bucket,
            charge.agent,
            charge.hold_id,
            charge.tokens,
            charge.saved,
            charge.agent_tokens,
            charge.sprint_tokens,
            repr(charge.alert_at),
            repr(charge.block_at),
            repr(charge.low_remaining),
            _ms(charge.expire_at),
        )
        return Settled(Balance(*(int(v) for v in out[:6])), tuple(_text(v) for v in out[6:]))

    async def snapshot(self, bucket: str) -> Accounts:
        flat, seats = await self._run(self._snapshot, bucket)
        fields = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Accounts.from_fields(fields, [_text(s) for s in seats])

    async def reset(self, bucket: str, agent: str | None = None) -> None:
        await self._run(self._reset, bucket, agent or "")

    async def adjust(self, bucket: str, agent: str | None, tokens: int, expire_at: float | None) -> None:
        await self._run(self._adjust, bucket, f"adj:{agent}" if agent else "adj", tokens, _ms(expire_at))
