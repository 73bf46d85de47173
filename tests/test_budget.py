"""Token budgets, unit level: the policy section, sprint periods, the stage (reserve / settle), alerts, and
counting tokens when a provider reports no usage. The ledger itself: tests/test_budget_ledger.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from prometheus_client import REGISTRY

from gateway.budget import AlertSink, BudgetManager
from gateway.budget.ledger import Balance, Ledger
from gateway.budget.memory import MemoryLedger
from gateway.budget.report import describe
from gateway.budget.sprints import period_of, select
from gateway.context import Request, Standing, Usage
from gateway.errors import GatewayError
from gateway.metrics import LabelLimiter
from gateway.policy import ConfigError, load_policy
from gateway.policy.budget import BudgetConfig, SprintConfig, WebhookConfig
from gateway.protocols import CHAT
from gateway.router import Decision, RuleSet
from gateway.sse import UsageWatcher
from gateway.store import StoreError
from gateway.tokens import estimate_text
from tests.fakes.background import BackgroundServer
from tests.routing_helpers import CUSTOM, context, custom_policy

START = datetime(2030, 1, 6, tzinfo=UTC)
T0 = START.timestamp()


# --- policy -----------------------------------------------------------------------------------------------


def load(tmp_path: Path, budgets: dict[str, Any]) -> BudgetConfig:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"budgets": budgets}))
    return load_policy(path, env={}).budgets


@pytest.mark.parametrize(
    ("sprint", "key", "words"),
    [
        ({"alert_at": 0.9, "block_at": 0.8}, "budgets.sprints.0", "alert_at (0.9) must not exceed block_at"),
        ({"per_agent": {"zed": 10}}, "budgets.sprints[0].per_agent.zed", "not in budgets.sprints[0].agents"),
        ({"per_agent": {"a": 900, "b": 200}}, "budgets.sprints[0].per_agent", "add up to more than"),
        ({"every": "7d", "end": "2030-02-01T00:00:00Z"}, "budgets.sprints.0", "either 'end' or 'every'"),
        ({"start": None, "every": "7d"}, "budgets.sprints.0", "needs a 'start'"),
        ({"end": "2030-01-01T00:00:00Z"}, "budgets.sprints.0", "'end' must be after 'start'"),
        ({"agents": ["a", "a"]}, "budgets.sprints[0].agents[1]", "appears twice"),
        ({"agents": ["a", "eng/bob"]}, "budgets.sprints[0].agents[1]", "agent names are 1-128 characters"),
        ({"agents": 0}, "budgets.sprints.0", "at least 1"),
        ({"id": "bad{tag}"}, "budgets.sprints.0.id", "pattern"),
        ({"budget": 5}, "budgets.sprints.0.budget", "unknown key"),
    ],
)
def test_bad_budgets_name_the_key(tmp_path: Path, sprint: dict[str, Any], key: str, words: str) -> None:
    base = {"id": "s", "start": "2030-01-06T00:00:00Z", "total_tokens": 1000, "agents": ["a", "b"]}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"sprints": [{**base, **sprint}]})
    assert info.value.path == key and words in str(info.value)


def test_duplicate_sprints_and_webhook_url_are_errors(tmp_path: Path) -> None:
    sprint = {"id": "s", "total_tokens": 10, "agents": 1}
    with pytest.raises(ConfigError, match="declared twice"):
        load(tmp_path, {"sprints": [sprint, sprint]})
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"webhook": {"url": "ftp://x"}})
    assert info.value.path == "budgets.webhook.url"


def test_shares(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "sprints": [
                {"id": "n", "total_tokens": 1000, "agents": ["a", "b", "c", "d"], "per_agent": {"a": 400}},
                {
                    "id": "c",
                    "total_tokens": 1000,
                    "agents": 4,
                    "unknown_agents": "share",
                    "every": "14d",
                    "start": "2030-01-06",
                },
            ]
        },
    )
    named, counted = config.sprints
    assert [named.share(a) for a in "abcd"] == [400, 200, 200, 200]
    assert named.share("zed") is None and named.unknown_share == 0
    assert counted.share("anyone") == 250 and counted.unknown_share == 250
    assert counted.every == timedelta(days=14) and counted.start == START


# --- sprints and periods ----------------------------------------------------------------------------------


def sprint(**fields: Any) -> SprintConfig:
    base: dict[str, Any] = {"id": "s", "start": START, "total_tokens": 1000, "agents": ["a", "b"]}
    return SprintConfig.model_validate({**base, **fields})


def test_periods_fixed_and_recurring() -> None:
    fixed = sprint(end=START + timedelta(days=14))
    assert period_of(fixed, T0 - 1) is None and period_of(fixed, T0 + 14 * 86400) is None
    period = period_of(fixed, T0 + 5)
    assert (
        period is not None
        and period.bucket == "{sprint:s}:0"
        and period.resets_at() == "2030-01-20T00:00:00Z"
    )
    assert period.seconds_left(T0 + 5) == 14 * 86400 - 5
    weekly = sprint(every=timedelta(days=7))
    third = period_of(weekly, T0 + 15 * 86400)
    assert third is not None and third.index == 2 and third.start == T0 + 14 * 86400
    assert third.bucket == "{sprint:s}:2"
    open_ended = period_of(sprint(start=None), 0)
    assert open_ended is not None and open_ended.end is None and open_ended.resets_at() is None


def test_select_prefers_x_sprint_then_the_agents_own_sprint() -> None:
    team_a, team_b = sprint(id="a", agents=["a1"]), sprint(id="b", agents=["b1"])
    sprints = [team_a, team_b]
    assert select(sprints, "b1", None, T0).sprint.id == "b"  # type: ignore[union-attr]
    assert select(sprints, "b1", "a", T0).sprint.id == "a"  # type: ignore[union-attr]
    assert select(sprints, "b1", "nope", T0).sprint.id == "b"  # type: ignore[union-attr]
    assert select(sprints, "stranger", None, T0).sprint.id == "a"  # type: ignore[union-attr]
    assert select(sprints, "b1", None, T0 - 10) is None


# --- the stage --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = T0 + 60) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def manager(*sprints: SprintConfig, clock: Clock | None = None, ledger: Ledger | None = None, **config: Any):
    clock = clock or Clock()
    budgets = BudgetConfig(sprints=list(sprints), default_max_tokens=50, **config)
    ledger = ledger or MemoryLedger(clock)
    return BudgetManager(budgets, ledger, AlertSink(WebhookConfig()), LabelLimiter(10), clock)


def request(agent: str = "a", prompt: int = 50, priority: str | None = None, **body: Any) -> Request:
    ctx = Request("r", CHAT, agent, "team", priority=priority, body=body, prompt_estimate=prompt)
    return ctx


async def spend(budget: BudgetManager, ctx: Request, tokens: int | None, hit: bool = False) -> None:
    hold = await budget.reserve(ctx)
    assert hold is not None
    await budget.settle(hold, None if tokens is None else Usage(tokens, 0), hit)


async def accounts(budget: BudgetManager, sprint_config: SprintConfig) -> dict[str, Any]:
    period = budget.period(sprint_config)
    assert period is not None
    return describe(sprint_config, period, await budget.ledger.snapshot(period.bucket))


async def test_no_sprint_costs_nothing() -> None:
    assert await manager().reserve(request()) is None


async def test_reserve_sets_header_budget_left_and_downgrade() -> None:
    config = sprint(id="hdr", end=START + timedelta(days=14))
    budget = manager(config)
    ctx = request(max_tokens=100)
    hold = await budget.reserve(ctx)
    assert hold is not None and hold.tokens == 150, "prompt estimate + max tokens"
    assert hold.remaining == 350 and hold.standing == Standing(downgrade=False, budget_left=1.0)
    await budget.settle(hold, Usage(300, 100), hit=False)
    gauge = "token_budget_remaining"
    assert REGISTRY.get_sample_value(gauge, {"sprint": "hdr", "agent": "a"}) == 100
    assert REGISTRY.get_sample_value(gauge, {"sprint": "hdr", "agent": "_sprint"}) == 600
    low = await budget.reserve(request())
    assert low is not None and low.standing.downgrade and low.standing.budget_left == pytest.approx(0.2)
    assert low.remaining == 0
    no_downgrade = manager(sprint(id="hdr2", actions={"downgrade": False}))
    await spend(no_downgrade, request(), 400)
    kept = await no_downgrade.reserve(request(prompt=10))
    assert kept is not None and not kept.standing.downgrade


async def test_exhausted_budget_is_a_429_the_sdk_does_not_retry() -> None:
    clock = Clock()
    config = sprint(id="full", end=START + timedelta(days=14))
    budget = manager(config, clock=clock)
    await spend(budget, request(), 480)
    before = REGISTRY.get_sample_value("token_budget_exceeded_total", {"agent": "a"}) or 0
    with pytest.raises(GatewayError) as info:
        await budget.reserve(request(prompt=10, max_tokens=20))
    error = info.value
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "budget_exceeded")
    assert "agent 'a'" in error.message.lower() and "sprint 'full'" in error.message
    assert "2030-01-20T00:00:00Z" in error.message and "20 tokens left" in error.message
    assert error.headers["x-should-retry"] == "false"
    assert error.headers["Retry-After"] == str(14 * 86400 - 60)
    assert REGISTRY.get_sample_value("token_budget_exceeded_total", {"agent": "a"}) == before + 1
    assert (await budget.reserve(request(prompt=10, max_tokens=10))) is not None, "what fits still goes"


async def test_agents_outside_the_sprint() -> None:
    with pytest.raises(GatewayError) as info:
        await manager(sprint(id="closed")).reserve(request("stranger"))
    assert info.value.status == 403 and info.value.code == "agent_not_in_budget"
    config = sprint(id="open", unknown_agents="share", unknown_agent_tokens=120)
    budget = manager(config)
    await spend(budget, request("stranger"), 100)
    with pytest.raises(GatewayError, match="stranger"):
        await budget.reserve(request("stranger", prompt=10))
    seats = sprint(id="seats", agents=2)
    budget = manager(seats)
    for agent in ("x", "y"):
        assert await budget.reserve(request(agent)) is not None
    with pytest.raises(GatewayError) as info:
        await budget.reserve(request("z"))
    assert info.value.status == 403


async def test_cache_hits_are_free_and_failures_release() -> None:
    config = sprint(id="free")
    budget = manager(config)
    await spend(budget, request(), 70, hit=True)
    await spend(budget, request(), None)
    await spend(budget, request(), 30)
    line = (await accounts(budget, config))["agents"][0]
    assert line == {
        "agent": "a",
        "limit": 500,
        "used": 30,
        "reserved": 0,
        "saved": 70,
        "adjustment": 0,
        "remaining": 470,
        "state": "ok",
    }


async def test_pause_and_redistribute_follow_priority() -> None:
    config = sprint(
        id="act", actions={"pause_non_critical": {"enabled": True, "at": 0.5}, "redistribute": True}
    )
    budget = manager(config)
    await spend(budget, request("a"), 450)
    with pytest.raises(GatewayError) as info:
        await budget.reserve(request("b", priority="P2"))
    assert info.value.code == "budget_paused" and "P0/P1" in info.value.message
    assert await budget.reserve(request("b", priority="P1")) is not None
    await spend(budget, request("a", priority="P0"), 300)
    assert (await accounts(budget, config))["agents"][0]["used"] == 750, "a borrowed from b's unused share"
    with pytest.raises(GatewayError, match="is paused"):
        await budget.reserve(request("a", priority="P3"))


async def test_sprint_rollover_gives_a_whole_budget() -> None:
    clock = Clock()
    config = sprint(id="roll", every=timedelta(hours=1))
    budget = manager(config, clock=clock)
    await spend(budget, request(), 500)
    with pytest.raises(GatewayError) as info:
        await budget.reserve(request())
    assert info.value.headers["Retry-After"] == str(3600 - 60)
    clock.now += 3600
    hold = await budget.reserve(request())
    assert hold is not None and hold.period.index == 1
    assert (await accounts(budget, config))["agents"][0]["reserved"] == 100


async def test_alerts_fire_once_per_agent_and_period() -> None:
    config = sprint(id="alerts", agents=["a"])
    budget = manager(config)

    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("token_budget_alerts_total", {"sprint": "alerts", "kind": kind}) or 0

    for tokens in (850, 10, 60):
        await spend(budget, request(prompt=1, max_tokens=1), tokens)
    assert (count("alert"), count("block"), count("low")) == (1, 0, 1)
    for _ in range(2):
        with pytest.raises(GatewayError):
            await budget.reserve(request())
    assert (count("alert"), count("block"), count("low")) == (1, 1, 1)


class BrokenLedger(MemoryLedger):
    async def reserve(self, bucket: str, ask: Any) -> Any:
        raise StoreError("redis: ConnectionError")


async def test_store_down_refuses_or_allows_by_policy() -> None:
    config = sprint(id="down")
    with pytest.raises(GatewayError) as info:
        await manager(config, ledger=BrokenLedger()).reserve(request())
    assert info.value.status == 503 and info.value.code == "budget_unavailable"
    assert await manager(config, ledger=BrokenLedger(), on_store_error="allow").reserve(request()) is None


async def test_commit_survives_the_caller_being_cancelled() -> None:
    config = sprint(id="cancel")
    budget = manager(config)
    ctx = request()
    hold = await budget.reserve(ctx)
    assert hold is not None

    async def caller() -> None:
        await asyncio.shield(budget.settle(hold, Usage(42, 0), hit=False))

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0)
    task.cancel()
    await budget.close()
    assert (await accounts(budget, config))["sprint"]["used"] == 42


def test_router_takes_a_cheaper_tier_when_the_budget_asks() -> None:
    policy = custom_policy(CUSTOM)
    rules = RuleSet(policy.routing, policy.models)
    big = rules.decide(*context(lines_estimate=600), 1024, concrete=False)
    assert big.model == "big"
    cheaper = rules.downgrade(big, 1000)
    assert cheaper.model == "mid" and cheaper.reason == "rule:big-change;budget-downgrade"
    assert rules.downgrade(big, 20_000).model == "mini-long", "the nearest cheaper tier that fits"
    smallest = Decision("mini", "default")
    assert rules.downgrade(smallest, 100) == smallest


# --- webhook ----------------------------------------------------------------------------------------------


async def test_webhook_retries_in_the_background() -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=500 if len(received) == 1 else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    with BackgroundServer(app) as server:
        sink = AlertSink(WebhookConfig(url=server.url + "/hook", backoff_s=0.01))
        await sink.start()
        period = period_of(sprint(id="hook"), T0 + 1)
        assert period is not None
        sink.emit("alert", period, "a", Balance(800, 0, 1000, 800, 0, 2000))
        await sink.close()
    assert len(received) == 2 and sink.delivered == 1
    assert received[1]["event"] == "budget_alert" and received[1]["agent"] == "a"
    assert received[1]["used"] == 800 and received[1]["sprint"] == "hook"


# --- counting when a provider reports no usage ------------------------------------------------------------


def test_counted_usage_of_a_json_answer_without_usage() -> None:
    answer = {"choices": [{"message": {"content": "hello there, general"}}]}
    usage = CHAT.counted(12, answer)
    assert usage == Usage(12, estimate_text("hello there, general"))
    assert CHAT.counted(12, {"error": {"message": "boom"}}) is None


def test_stream_without_usage_is_counted_and_with_usage_is_not() -> None:
    chunks = [{"choices": [{"delta": {"content": piece}}]} for piece in ("hello ", "there, ", "general")]
    watcher = UsageWatcher(CHAT, client_wants_usage=False)
    for chunk in chunks:
        assert watcher.keep(orjson.dumps(chunk))
    assert watcher.usage_or_count(7) == Usage(7, estimate_text("hello there, general"))
    reported = UsageWatcher(CHAT, client_wants_usage=False)
    reported.keep(orjson.dumps(chunks[0]))
    assert not reported.keep(
        orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    )
    assert reported.usage_or_count(7) == Usage(3, 4)
    assert UsageWatcher(CHAT, client_wants_usage=False).usage_or_count(7) is None
