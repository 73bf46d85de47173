"""The budget ledger's contract, run against both implementations (memory, and Redis Lua on a real server)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis

from gateway.budget.ledger import Ask, Charge, Ledger
from gateway.policy.core import StoreConfig
from gateway.store import MemoryStore, RedisStore, connect_redis

BUCKET = "{sprint:s1}:0"
ASK = Ask(
    agent="a",
    hold_id="h",
    tokens=40,
    agent_tokens=100,
    sprint_tokens=300,
    block_at=1.0,
    pause_at=0.0,
    critical=False,
    borrow=False,
    seats=0,
    unknown_tokens=0,
    ttl_s=30,
    expire_at=None,
)
CHARGE = Charge(
    agent="a",
    hold_id="h",
    tokens=0,
    saved=0,
    agent_tokens=100,
    sprint_tokens=300,
    alert_at=0.8,
    block_at=1.0,
    low_remaining=0.1,
    expire_at=None,
)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield MemoryStore().budget_ledger("t:")
        return
    store = RedisStore(connect_redis(StoreConfig(url=request.getfixturevalue("redis_url"))))
    yield store.budget_ledger("t:")
    await store.close()


def ask(hold_id: str, **changes: object) -> Ask:
    return replace(ASK, hold_id=hold_id, **changes)  # type: ignore[arg-type]


def charge(hold_id: str, tokens: int, **changes: object) -> Charge:
    return replace(CHARGE, hold_id=hold_id, tokens=tokens, **changes)  # type: ignore[arg-type]


async def test_reserve_checks_the_agent_limit_and_counts_the_block_once(ledger: Ledger) -> None:
    first = await ledger.reserve(BUCKET, ask("h1"))
    assert first.status == "ok" and first.balance.agent_reserved == 40 and first.balance.sprint_reserved == 40
    assert (await ledger.reserve(BUCKET, ask("h2"))).status == "ok"
    refused = await ledger.reserve(BUCKET, ask("h3"))
    assert refused.status == "agent" and refused.first_block
    assert refused.balance.agent_reserved == 80, "a refusal reserves nothing"
    assert not (await ledger.reserve(BUCKET, ask("h4"))).first_block
    assert (await ledger.reserve(BUCKET, ask("h5", tokens=20))).status == "ok", "what fits still fits"
    other = await ledger.reserve(BUCKET, ask("h6", agent="b"))
    assert (
        other.status == "ok" and other.balance.agent_reserved == 40 and other.balance.sprint_reserved == 140
    )


async def test_sprint_limit_and_block_at(ledger: Ledger) -> None:
    generous = {"agent_tokens": 1000, "block_at": 1.1}
    assert (await ledger.reserve(BUCKET, ask("h1", tokens=300, **generous))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h2", tokens=30, **generous))).status == "ok", "up to 110 %"
    verdict = await ledger.reserve(BUCKET, ask("h3", tokens=1, **generous))
    assert verdict.status == "sprint" and verdict.balance.sprint_reserved == 330


async def test_pause_refuses_only_non_critical_work(ledger: Ledger) -> None:
    big = {"agent_tokens": 300, "pause_at": 0.5}
    assert (await ledger.reserve(BUCKET, ask("h1", tokens=140, **big))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h2", tokens=20, **big))).status == "paused"
    assert (await ledger.reserve(BUCKET, ask("h3", tokens=20, critical=True, **big))).status == "ok"


async def test_redistribute_lends_unused_budget_to_critical_work_only(ledger: Ledger) -> None:
    assert (await ledger.reserve(BUCKET, ask("h1", tokens=100))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h2", tokens=50, critical=True))).status == "agent", "switch off"
    assert (await ledger.reserve(BUCKET, ask("h3", tokens=50, borrow=True))).status == "agent", "P2/P3 never"
    lent = await ledger.reserve(BUCKET, ask("h4", tokens=150, borrow=True, critical=True))
    assert lent.status == "ok" and lent.borrowed and lent.balance.agent_reserved == 250
    over = await ledger.reserve(BUCKET, ask("h5", tokens=60, borrow=True, critical=True))
    assert over.status == "sprint", "borrowing stops where the sprint's budget ends"


async def test_seats_go_to_the_first_agents_of_the_period(ledger: Ledger) -> None:
    seated = {"seats": 2, "tokens": 10}
    assert (await ledger.reserve(BUCKET, ask("h1", agent="a", **seated))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h2", agent="b", **seated))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h3", agent="c", **seated))).status == "unknown"
    assert (await ledger.reserve(BUCKET, ask("h4", agent="a", **seated))).status == "ok", "a keeps its seat"
    guest = await ledger.reserve(BUCKET, ask("h5", agent="c", unknown_tokens=15, **seated))
    assert guest.status == "ok" and guest.agent_base == 15 and guest.balance.agent_limit == 15
    assert (await ledger.snapshot(BUCKET)).seats == ["a", "b"]


async def test_commit_releases_the_reservation_and_raises_each_alert_once(ledger: Ledger) -> None:
    await ledger.reserve(BUCKET, ask("h1"))
    settled = await ledger.commit(BUCKET, charge("h1", 85))
    assert settled.fired == ("alert",)
    assert settled.balance.agent_used == 85 and settled.balance.agent_reserved == 0
    await ledger.reserve(BUCKET, ask("h2", tokens=10))
    assert (await ledger.commit(BUCKET, charge("h2", 5))).fired == (), "alert only once per period"
    await ledger.reserve(BUCKET, ask("h3", tokens=10))
    assert (await ledger.commit(BUCKET, charge("h3", 25))).fired == ("block",), "overspend is still committed"
    await ledger.reserve(BUCKET, ask("h4", agent="b", tokens=100, agent_tokens=300))
    settled = await ledger.commit(BUCKET, charge("h4", 160, agent="b", agent_tokens=300))
    assert settled.fired == ("low",) and settled.balance.sprint_used == 275
    accounts = await ledger.snapshot(BUCKET)
    assert accounts.sprint.used == 275 and accounts.sprint.reserved == 0
    assert accounts.agents["a"].used == 115 and accounts.agents["b"].used == 160


async def test_cache_hits_cost_nothing_and_count_as_saved(ledger: Ledger) -> None:
    await ledger.reserve(BUCKET, ask("h1"))
    settled = await ledger.commit(BUCKET, charge("h1", 0, saved=33))
    assert settled.balance.agent_used == 0 and settled.balance.agent_reserved == 0
    accounts = await ledger.snapshot(BUCKET)
    assert accounts.agents["a"].saved == 33 and accounts.sprint.saved == 33


async def test_expired_reservations_come_back(ledger: Ledger) -> None:
    assert (await ledger.reserve(BUCKET, ask("dead", tokens=100, ttl_s=0.2))).status == "ok"
    assert (await ledger.reserve(BUCKET, ask("h1", tokens=1))).status == "agent"
    await asyncio.sleep(0.3)
    assert (await ledger.snapshot(BUCKET)).sprint.reserved == 0
    assert (await ledger.reserve(BUCKET, ask("h2", tokens=100))).status == "ok"
    late = await ledger.commit(BUCKET, charge("dead", 7))
    assert late.balance.agent_reserved == 100, "a late commit of an expired hold releases nothing twice"
    assert late.balance.agent_used == 7


async def test_concurrent_reservations_never_exceed_the_limit(ledger: Ledger) -> None:
    limits = {"agent_tokens": 700, "sprint_tokens": 700, "tokens": 7}
    verdicts = await asyncio.gather(*(ledger.reserve(BUCKET, ask(f"h{i}", **limits)) for i in range(200)))
    granted = [f"h{i}" for i, v in enumerate(verdicts) if v.status == "ok"]
    assert len(granted) == 100
    assert (await ledger.snapshot(BUCKET)).sprint.reserved == 700
    actual = {hold: random.randint(0, 12) for hold in granted}
    await asyncio.gather(
        *(ledger.commit(BUCKET, charge(h, n, agent_tokens=700, sprint_tokens=700)) for h, n in actual.items())
    )
    accounts = await ledger.snapshot(BUCKET)
    assert accounts.sprint.used == sum(actual.values()) and accounts.sprint.reserved == 0
    overspend_bound = sum(max(0, n - 7) for n in actual.values())
    assert accounts.sprint.used <= 700 + overspend_bound


async def test_reset_and_adjust(ledger: Ledger) -> None:
    await ledger.reserve(BUCKET, ask("h1", tokens=90))
    await ledger.commit(BUCKET, charge("h1", 90))
    await ledger.reserve(BUCKET, ask("b1", agent="b", tokens=10))
    assert (await ledger.reserve(BUCKET, ask("h2", tokens=20))).status == "agent"
    await ledger.adjust(BUCKET, "a", 50, None)
    verdict = await ledger.reserve(BUCKET, ask("h3", tokens=20))
    assert verdict.status == "ok" and verdict.balance.agent_limit == 150
    await ledger.adjust(BUCKET, None, -100, None)
    assert (await ledger.reserve(BUCKET, ask("h4", agent="b", tokens=81))).status == "sprint"
    assert (await ledger.reserve(BUCKET, ask("h5", agent="b", tokens=80))).status == "ok"
    await ledger.reset(BUCKET, "a")
    accounts = await ledger.snapshot(BUCKET)
    assert accounts.agents["a"].used == 0 and accounts.agents["a"].adjust == 0
    assert accounts.sprint.used == 0 and accounts.sprint.adjust == -100
    assert accounts.sprint.reserved == 110, "live reservations survive a reset"
    await ledger.reset(BUCKET)
    accounts = await ledger.snapshot(BUCKET)
    assert accounts.sprint.adjust == 0 and accounts.sprint.reserved == 110


async def test_redis_keys_share_the_sprint_hash_tag_and_expire(redis_url: str) -> None:
    store = RedisStore(connect_redis(StoreConfig(url=redis_url)))
    ledger = store.budget_ledger("t:")
    end = time.time() + 3600
    await ledger.reserve(BUCKET, ask("h1", seats=3, expire_at=end))
    await ledger.reserve(BUCKET, ask("h2", seats=3, expire_at=end))
    await ledger.commit(BUCKET, charge("h1", 5, expire_at=end))
    await store.close()
    client = redis.Redis.from_url(redis_url)
    keys = client.keys("t:budget:*")
    assert len(keys) == 5
    assert {key[key.index(b"{") + 1 : key.index(b"}")] for key in keys} == {b"sprint:s1"}, "one cluster slot"
    assert all(3590 < client.ttl(key) <= 3600 for key in keys)
    client.close()
