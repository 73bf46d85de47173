"""The runaway brake: trips on a loop of identical uncached requests at the (N+1)th and on a burn-rate
spike, not on normal traffic; the pause refuses with 429 agent_paused until an operator resumes it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.context import CacheOutcome, Outcome, Request, Usage
from gateway.errors import GatewayError
from gateway.limits import Limiter
from gateway.metrics import LabelLimiter
from gateway.policy import Policy
from gateway.protocols import CHAT
from gateway.tickets import MemoryTickets, TicketStore
from gateway.tickets.redis import RedisTickets
from tests.conftest import ADMIN_KEY, GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
NOW = START + 3600.0
KEY = {"Authorization": f"Bearer {GATEWAY_KEY}"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def tickets(request: pytest.FixtureRequest) -> AsyncIterator[TicketStore]:
    if request.param == "memory":
        yield MemoryTickets()
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisTickets(client, "test:")
    await client.aclose()


def limiter(tickets: TicketStore, events: list[dict[str, Any]], clock: Clock, **brake: Any) -> Limiter:
    sprint = {
        "id": "s1",
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-11T00:00:00Z",  # 240 hours
        "total_tokens": 2_400_000,
        "agents": ["dev-1", "dev-2"],  # 1.2M each: 5,000 an hour
    }
    policy = Policy.model_validate(
        {
            "budgets": {"sprints": [sprint]},
            "limits": {"brake": {"repeat_limit": 3, "burn_multiple": 4, "burn_min_tokens": 0, **brake}},
        }
    )
    return Limiter(policy, tickets, events.append, LabelLimiter(10), clock)


def request(agent: str = "dev-1", text: str = "fix the failing test") -> Request:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "temperature": 1}
    return Request("r", CHAT, agent, "t", body=body, requested_model="gpt-4o-mini")


async def send(limits: Limiter, asked: Request, tokens: int = 100, cache: str = "BYPASS") -> None:
    """One request through admission and settlement, as the pipeline runs them."""
    admission = await limits.admit(asked, KEY)
    usage = Usage(tokens // 2, tokens - tokens // 2)
    outcome = Outcome(asked, asked.requested_model, cache=CacheOutcome(cache), usage=usage)
    task = limits.settle(admission, outcome)
    if task is not None:
        await task


async def test_a_loop_trips_at_the_repeat_after_the_limit(tickets: TicketStore) -> None:
    events: list[dict[str, Any]] = []
    clock = Clock()
    limits = limiter(tickets, events, clock)
    for i in range(4):  # N = 3: the 4th identical request (N + 1) is served, and trips the brake
        clock.now += 1
        await send(limits, request())
        assert bool(events) == (i == 3)
    with pytest.raises(GatewayError) as refused:
        await send(limits, request(text="something else entirely"))
    assert (refused.value.status, refused.value.code) == (429, "agent_paused")
    assert "same request more than 3 times in 60s" in refused.value.message
    assert refused.value.headers["x-should-retry"] == "false"
    assert events[0]["event"] == "brake_paused" and events[0]["reason"] == "repeat"
    assert events[0]["agent"] == "dev-1"
    await send(limits, request(agent="dev-2"))  # another agent goes on
    assert set(await limits.brake.paused()) == {"dev-1"}
    assert await limits.brake.resume("dev-1")
    await send(limits, request(text="something else entirely"))


async def test_repeats_spread_beyond_the_window_and_cache_hits_do_not_trip(tickets: TicketStore) -> None:
    events: list[dict[str, Any]] = []
    clock = Clock()
    limits = limiter(tickets, events, clock)
    for _ in range(10):
        clock.now += 21  # 3 per 60 s at most
        await send(limits, request())
    for _ in range(10):
        await send(limits, request(), cache="HIT")  # the cache answers: nothing reaches the provider
    for i in range(10):
        await send(limits, request(text=f"task {i}"))
    assert events == [] and await limits.brake.paused() == {}


async def test_a_burn_rate_spike_trips(tickets: TicketStore) -> None:
    events: list[dict[str, Any]] = []
    clock = Clock()
    limits = limiter(tickets, events, clock)  # ceiling: 4 x 5,000 = 20,000 tokens an hour
    for i in range(19):
        clock.now += 60
        await send(limits, request(text=f"task {i}"), tokens=1_000)
    assert events == []
    await send(limits, request(text="task 19"), tokens=2_000)
    assert [e["reason"] for e in events] == ["burn"]
    assert "4x its sprint share per hour" in events[0]["message"]
    with pytest.raises(GatewayError, match="runaway brake"):
        await send(limits, request(text="task 20"))


async def test_a_steady_burn_at_the_share_never_trips(tickets: TicketStore) -> None:
    events: list[dict[str, Any]] = []
    clock = Clock()
    limits = limiter(tickets, events, clock)
    for i in range(200):  # twice the share per hour, for many hours
        clock.now += 360
        await send(limits, request(text=f"task {i}"), tokens=1_000)
    assert events == []


async def test_brake_off_never_counts(tickets: TicketStore) -> None:
    events: list[dict[str, Any]] = []
    limits = limiter(tickets, events, Clock(), enabled=False)
    for _ in range(10):
        await send(limits, request(), tokens=10**6)
    assert events == []


async def test_the_gateway_pauses_a_looping_agent_until_resumed(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(
        base_policy(fake_upstream.url, limits={"brake": {"repeat_limit": 2}})  # type: ignore[attr-defined]
    )
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "loop"}], "temperature": 1}
    async with httpx.AsyncClient(base_url=url, headers=KEY) as http:
        for _ in range(3):
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
        for attempt in itertools.count():  # the trip is recorded as the third answer is settled
            paused = (await http.get("/admin/agents/paused", headers=admin)).json()["paused"]
            if paused or attempt > 1000:
                break
        assert paused["agent-1"]["reason"] == "repeat"
        refused = await http.post("/v1/chat/completions", json=body)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "agent_paused"
        assert (await http.get("/admin/budgets", headers=admin)).json()["paused"] == paused
        metrics = (await http.get("/metrics")).text
        assert 'gateway_brake_trips_total{agent="agent-1",reason="repeat"} 1.0' in metrics
        resumed = await http.post("/admin/agents/agent-1/resume", headers=admin)
        assert resumed.json() == {"agent": "agent-1", "resumed": True}
        other = {**body, "messages": [{"role": "user", "content": "new work"}]}
        assert (await http.post("/v1/chat/completions", json=other)).status_code == 200
