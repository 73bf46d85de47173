"""Token budgets end to end: real gateway processes sharing one Redis, the openai SDK, the admin API.

Requests use a prompt for which the gateway's estimate and the fake provider's count agree, and a
``max_tokens`` the fake always fills, so a reservation equals the usage later committed and the number
of requests a budget allows is known exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.policy.core import StoreConfig
from gateway.protocols import CHAT
from gateway.store import open_redis
from tests.conftest import ADMIN_KEY, GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "budget budget budget budget"}]
MAX_TOKENS = 5
COST = 16
"""Prompt 11 (estimate and fake count agree) + 5 completion tokens (the fake's answer is longer)."""
Serve = Callable[..., tuple[subprocess.Popen[str], str]]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS, **extra}


def sprint(total: int, **fields: Any) -> dict[str, Any]:
    return {"sprints": [{"id": "s1", "total_tokens": total, "agents": ["agent-1"], **fields}]}


def reported_usage(fake: FakeUpstream) -> int:
    """What the fake provider billed: the usage of every answer it gave."""
    return sum(
        fake.answer(r.path, r.json)["usage"]["total_tokens"]
        for r in fake.requests
        if r.path.endswith("/completions")
    )


def budgets_report(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/budgets", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    return response.json()["data"][0]  # type: ignore[no-any-return]


def test_the_request_is_costed_exactly(fake_upstream: FakeUpstream) -> None:
    assert CHAT.estimate(chat()) + MAX_TOKENS == COST
    assert fake_upstream.answer("/chat/completions", chat())["usage"]["total_tokens"] == COST


async def _burst(urls: list[str], count: int, body: dict[str, Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(
                http.post(
                    f"{urls[i % len(urls)]}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                )
                for i in range(count)
            )
        )


def test_two_gateways_share_one_budget_under_concurrency(
    serve: Serve, policy_file: Callable[..., Path], fake_upstream: FakeUpstream, redis_url: str
) -> None:
    total = 100 * COST + 10
    path = policy_file(store={"url": redis_url}, cache={"enabled": False}, budgets=sprint(total))
    urls = [serve(path)[1], serve(path)[1]]
    fake_upstream.latency_s = 0.05
    responses = asyncio.run(_burst(urls, 200, chat()))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100 and statuses.count(429) == 100, (
        "refused exactly once the budget is spent"
    )
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    assert all("X-Budget-Remaining-Tokens" in r.headers for r in responses)
    assert fake_upstream.count("/v1/chat/completions") == 100
    line = budgets_report(urls[1])["sprint"]
    assert line["used"] == reported_usage(fake_upstream) == 100 * COST, "committed = provider usage, exactly"
    assert line["reserved"] == 0 and line["used"] <= total


def test_overspend_stays_within_what_answers_exceeded_their_reservation(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    """Without max_tokens the policy default (2) is reserved, but the fake answers 9 completion tokens."""
    total = 50 * 13
    budgets = {**sprint(total), "default_max_tokens": 2}
    url = start_gateway(
        base_policy(fake_upstream.url, store={"url": redis_url}, cache={"enabled": False}, budgets=budgets)
    )
    fake_upstream.latency_s = 0.05
    responses = asyncio.run(_burst([url], 100, {"model": "gpt-4o-mini", "messages": MESSAGES}))
    granted = sum(r.status_code == 200 for r in responses)
    used = budgets_report(url)["sprint"]["used"]
    assert used == reported_usage(fake_upstream) == granted * 20
    assert used > total - 13, "no request was refused while its reservation still fitted"
    assert used <= total + granted * (20 - 13), "overspend bound: usage beyond each reservation"


def test_a_killed_gateway_leaks_no_reservation(
    serve: Serve, policy_file: Callable[..., Path], fake_upstream: FakeUpstream, redis_url: str
) -> None:
    budgets = {**sprint(1000), "reservation_ttl_s": 1.5}
    proc, url = serve(policy_file(store={"url": redis_url}, budgets=budgets))
    fake_upstream.latency_s = 5
    outcome: list[BaseException] = []

    def slow_call() -> None:
        try:
            httpx.post(
                f"{url}/v1/chat/completions",
                json=chat(),
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    deadline = time.monotonic() + 5
    while fake_upstream.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    caller.join(10)
    assert outcome, "the request died with its gateway"
    reserved_at = time.monotonic()
    assert _accounts(redis_url).sprint.reserved == COST, "the dead gateway's reservation still counts"
    time.sleep(max(0.0, 1.6 - (time.monotonic() - reserved_at)))
    accounts = _accounts(redis_url)
    assert accounts.sprint.reserved == 0 and accounts.sprint.used == 0, "the budget is whole again"


def _accounts(redis_url: str) -> Any:
    async def read() -> Any:
        store = open_redis(StoreConfig(url=redis_url))
        try:
            return await store.budget_ledger(StoreConfig().prefix).snapshot("{sprint:s1}:0")
        finally:
            await store.close()

    return asyncio.run(read())


# --- the openai SDK ----------------------------------------------------------------------------------------


@pytest.fixture
def budget_gateway(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> Callable[..., str]:
    """An in-thread gateway in open mode (the agent comes from X-Agent-Id) with a budgets section."""

    def start(budgets: dict[str, Any], **sections: Any) -> str:
        policy = base_policy(fake_upstream.url, auth={"keys": []}, **sections)
        return start_gateway({**policy, "budgets": budgets})

    return start


def sdk(url: str, agent: str, priority: str = "P2", retries: int = 0) -> openai.OpenAI:
    headers = {"X-Agent-Id": agent, "X-Priority": priority}
    return openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=retries, default_headers=headers)


def test_blocked_request_through_the_sdk(
    budget_gateway: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    end = "2099-01-01T00:00:00Z"
    url = budget_gateway(sprint(3 * COST, agents=["a"], end=end))
    client = sdk(url, "a", retries=3)
    for left in (2 * COST, COST, 0):
        raw = client.chat.completions.with_raw_response.create(**chat())
        assert raw.headers["X-Budget-Remaining-Tokens"] == str(left)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**chat())
    error = info.value
    assert error.code == "budget_exceeded" and error.type == "insufficient_quota"
    assert "'a'" in error.message and "'s1'" in error.message and "2099-01-01T00:00:00Z" in error.message
    assert int(error.response.headers["Retry-After"]) > 0
    assert error.response.headers["X-Budget-Remaining-Tokens"] == "0"
    assert budgets_report(url)["agents"][0]["state"] == "blocked"
    assert fake_upstream.count() == 3, "refused requests never reach the provider, and the SDK did not retry"


def test_streams_are_charged_their_usage(
    budget_gateway: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = budget_gateway(sprint(1000, agents=["a"]))
    stream = sdk(url, "a").chat.completions.with_streaming_response.create(**chat(stream=True))
    with stream as response:
        assert response.headers["X-Budget-Remaining-Tokens"] == str(1000 - COST)
        chunks = list(response.parse())
    assert all(chunk.usage is None for chunk in chunks), "the usage chunk the client did not ask for is gone"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert budgets_report(url)["sprint"]["used"] == COST


def test_pause_non_critical_work(budget_gateway: Callable[..., str]) -> None:
    pause = {"pause_non_critical": {"enabled": True, "at": 0.5}}
    url = budget_gateway(sprint(4 * COST, agents=["a", "b"], actions=pause))
    for _ in range(2):
        sdk(url, "a").chat.completions.create(**chat())
    with pytest.raises(openai.RateLimitError) as info:
        sdk(url, "b", "P3").chat.completions.create(**chat())
    assert info.value.code == "budget_paused"
    assert sdk(url, "b", "P1").chat.completions.create(**chat()).choices[0].message.content
    assert budgets_report(url)["sprint"]["state"] == "paused"


def test_redistribute_lends_unused_budget_to_critical_work(budget_gateway: Callable[..., str]) -> None:
    url = budget_gateway(sprint(4 * COST, agents=["a", "b"], actions={"redistribute": True}))
    for _ in range(2):
        sdk(url, "a").chat.completions.create(**chat())
    with pytest.raises(openai.RateLimitError, match="Agent 'a' has used its token budget"):
        sdk(url, "a", "P2").chat.completions.create(**chat())
    sdk(url, "a", "P0").chat.completions.create(**chat())
    agents = {line["agent"]: line for line in budgets_report(url)["agents"]}
    assert agents["a"]["used"] == 3 * COST and agents["a"]["remaining"] == -COST
    assert agents["b"]["used"] == 0


def test_admin_adjusts_and_resets(budget_gateway: Callable[..., str]) -> None:
    url = budget_gateway(sprint(2 * COST, agents=["a"]))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    client = sdk(url, "a")
    for _ in range(2):
        client.chat.completions.create(**chat())
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**chat())
    assert httpx.get(f"{url}/admin/budgets").status_code == 401
    raised = httpx.post(f"{url}/admin/budgets/s1/adjust", json={"agent": "a", "tokens": COST}, headers=admin)
    assert raised.status_code == 200 and raised.json()["agents"][0]["limit"] == 3 * COST
    assert httpx.post(f"{url}/admin/budgets/s1/adjust", json={"tokens": 0}, headers=admin).status_code == 400
    with pytest.raises(openai.RateLimitError, match="Sprint 's1' has used its token budget"):
        client.chat.completions.create(**chat())
    httpx.post(f"{url}/admin/budgets/s1/adjust", json={"tokens": COST}, headers=admin)
    client.chat.completions.create(**chat())
    reset = httpx.post(f"{url}/admin/budgets/s1/reset", headers=admin).json()
    assert reset["sprint"]["used"] == 0 and reset["agents"][0]["limit"] == 2 * COST
    assert httpx.post(f"{url}/admin/budgets/nope/reset", headers=admin).status_code == 404


def test_downgrade_past_alert_at_routes_to_a_cheaper_tier(budget_gateway: Callable[..., str]) -> None:
    routing = {"aliases": ["auto"], "default": {"tier": "large"}}
    url = budget_gateway(sprint(5 * COST, agents=["a"]), routing=routing)
    client = sdk(url, "a")
    first = client.chat.completions.with_raw_response.create(**chat(model="auto"))
    assert first.headers["X-Gateway-Model"] == "gpt-4.1"
    for _ in range(3):
        client.chat.completions.create(**chat(model="auto"))
    later = client.chat.completions.with_raw_response.create(**chat(model="auto"))
    assert later.headers["X-Gateway-Model"] == "gpt-4o-mini", "4 of 5 requests spent: past alert_at (0.8)"
    assert later.headers["X-Gateway-Route-Reason"] == "default;budget-downgrade"
    assert later.parse().model == "gpt-4o-mini"


def test_cache_hits_cost_nothing_and_count_as_saved(budget_gateway: Callable[..., str]) -> None:
    url = budget_gateway(sprint(1000, agents=["a"]), cache={"enabled": True})
    client = sdk(url, "a")
    first = client.chat.completions.with_raw_response.create(**chat())
    second = client.chat.completions.with_raw_response.create(**chat())
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    reserved_before_lookup = str(1000 - 2 * COST)
    assert second.headers["X-Budget-Remaining-Tokens"] == reserved_before_lookup
    line = budgets_report(url)["sprint"]
    assert (line["used"], line["saved"], line["reserved"]) == (COST, COST, 0)


def test_an_agent_has_one_label_in_every_metric(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    """Past metrics.max_agent_labels an agent is ``_other`` in the token and the budget metrics alike,
    even when the first agent seen by one metric is not the first seen by the other."""
    policy = base_policy(fake_upstream.url, metrics={"max_agent_labels": 1})  # type: ignore[attr-defined]
    policy["auth"]["keys"] = [
        {"key": "gw-label-a", "agent": "label-a", "team": "t"},
        {"key": "gw-label-b", "agent": "label-b", "team": "t"},
    ]
    policy["budgets"] = {
        "sprints": [
            {
                "id": "labels",
                "total_tokens": 10**6,
                "agents": ["label-a", "label-b"],
                "per_agent": {"label-b": 1},
            }
        ]
    }
    url = start_gateway(policy)
    refused = httpx.post(
        f"{url}/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer gw-label-b"}
    )
    answered = httpx.post(
        f"{url}/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer gw-label-a"}
    )
    assert (refused.status_code, answered.status_code) == (429, 200)
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    tokens = [line for line in lines if line.startswith("tokens_used_total{")]
    budget = [
        line for line in lines if line.startswith("token_budget_remaining{") and 'sprint="labels"' in line
    ]
    assert any('agent="label-b"' in line for line in budget), "label-b was seen first"
    assert not any('agent="label-a"' in line for line in tokens + budget), "label-a is _other everywhere"
