"""Backlog readings from a real Redis stream, with and without a consumer group, including null lag."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from gateway.autoscaler import signal
from gateway.autoscaler.signal import BacklogReader, StreamReading
from gateway.policy.autoscaler import TargetConfig


async def fill(client: aioredis.Redis, stream: str, count: int) -> list[bytes]:
    return [await client.xadd(stream, {"task": str(i)}) for i in range(count)]


async def test_without_a_group_the_backlog_is_xlen(redis_client: aioredis.Redis) -> None:
    reader = BacklogReader(redis_client)
    assert await reader.read_stream("tasks:stream", "") == StreamReading("tasks:stream", 0, 0, 0, "none")
    await fill(redis_client, "tasks:stream", 150)
    backlog = await reader.read(TargetConfig(), now=7.0)
    assert (backlog.total, backlog.signal, backlog.taken_at) == (150, "xlen", 7.0)


async def test_with_a_group_lag_and_pending_come_from_xinfo(redis_client: aioredis.Redis) -> None:
    ids = await fill(redis_client, "s", 10)
    await redis_client.xgroup_create("s", "agents", id="0")
    await redis_client.xreadgroup("agents", "a1", {"s": ">"}, count=4)
    await redis_client.xack("s", "agents", *ids[:1])
    reading = await BacklogReader(redis_client).read_stream("s", "agents")
    assert reading == StreamReading("s", 10, 6, 3, "xinfo")
    assert [reading.figure(s) for s in ("xlen", "lag", "pending", "lag_plus_pending")] == [10, 6, 3, 9]


async def test_null_lag_after_xdel_is_counted_exactly(redis_client: aioredis.Redis) -> None:
    ids = await fill(redis_client, "s", 10)
    await redis_client.xgroup_create("s", "agents", id="0")
    await redis_client.xreadgroup("agents", "a1", {"s": ">"}, count=3)
    await redis_client.xdel("s", ids[7])  # an undelivered entry: Redis can no longer compute the lag
    [info] = await redis_client.xinfo_groups("s")
    assert info["lag"] is None
    reading = await BacklogReader(redis_client).read_stream("s", "agents")
    assert reading == StreamReading("s", 9, 6, 3, "counted")


async def test_the_fallback_count_is_bounded(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await fill(redis_client, "s", 30)
    await redis_client.xgroup_create("s", "agents", id="0")
    await redis_client.xdel("s", ids[29])
    monkeypatch.setattr(signal, "COUNT_LIMIT", 12)
    assert (await BacklogReader(redis_client).read_stream("s", "agents")).lag == 12


async def test_a_group_not_created_yet_means_nothing_was_read(redis_client: aioredis.Redis) -> None:
    reader = BacklogReader(redis_client)
    assert await reader.read_stream("s", "agents") == StreamReading("s", 0, 0, 0, "no-group")
    await fill(redis_client, "s", 5)
    assert await reader.read_stream("s", "agents") == StreamReading("s", 5, 5, 0, "no-group")


async def test_several_streams_add_up(redis_client: aioredis.Redis) -> None:
    await fill(redis_client, "a", 3)
    await fill(redis_client, "b", 4)
    backlog = await BacklogReader(redis_client).read(TargetConfig(streams=["a", "b", "c"]), now=0.0)
    assert backlog.total == 7
    assert [r.stream for r in backlog.streams] == ["a", "b", "c"]


def test_next_id() -> None:
    assert signal._next_id(b"1700000000000-4") == "1700000000000-5"
    assert signal._next_id("0-0") == "0-1"
