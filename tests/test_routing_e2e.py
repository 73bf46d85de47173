"""Model routing end to end: the openai SDK asks for ``auto``, the fake provider sees the chosen model, and
the decision log is read back through the admin API from a real Redis or the memory store."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

ROUTING = {
    "aliases": ["auto"],
    "candidates": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1"],
    "rules": [
        {"name": "low-budget", "when": {"budget_left_below": 0.2}, "use": {"tier": "small"}},
        {"name": "large-prompt", "when": {"prompt_tokens_above": 3000}, "use": {"tier": "large"}},
        {
            "name": "creative-architecture",
            "when": {"task_types": ["creative", "architecture"]},
            "use": {"tier": "large"},
        },
        {
            "name": "refactor-qa-test",
            "when": {"task_types": ["refactor", "qa", "test"]},
            "use": {"tier": "medium"},
        },
    ],
    "default": {"tier": "small"},
    "priority_shift": {"P0": 1},
}


def routing_policy(url: str, **sections: Any) -> dict[str, Any]:
    policy = base_policy(url, routing=ROUTING, **sections)
    policy["models"]["gpt-4.1-mini"] = {"provider": "openai", "tier": "medium", "fallbacks": ["gpt-4o-mini"]}
    return policy


def messages(text: str = "") -> list[dict[str, str]]:
    """A prompt no earlier test sent, so the response cache never answers in the provider's place."""
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


def routing_log(url: str, limit: int | None = 50, wait_for: int = 1) -> list[dict[str, Any]]:
    """The admin API's view of the log; appends are asynchronous, so poll briefly for ``wait_for`` entries."""
    params = {} if limit is None else {"limit": limit}
    deadline = time.monotonic() + 5
    while True:
        reply = httpx.get(
            url + "/admin/routing-log", params=params, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert reply.status_code == 200, reply.text
        entries: list[dict[str, Any]] = reply.json()["data"]
        if len(entries) >= wait_for or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("headers", "prompt_words", "model", "reason"),
    [
        ({"X-Task-Type": "refactor", "X-Priority": "P2"}, 5, "gpt-4.1-mini", "rule:refactor-qa-test"),
        ({"X-Task-Type": "architecture"}, 5, "gpt-4.1", "rule:creative-architecture"),
        ({"X-Task-Type": "docs"}, 5, "gpt-4o-mini", "default"),
        ({"X-Task-Type": "docs", "X-Priority": "P0"}, 5, "gpt-4.1-mini", "default"),
        ({"X-Task-Type": "qa"}, 4000, "gpt-4.1", "rule:large-prompt"),
    ],
)
def test_auto_lands_on_the_expected_model(
    fake_upstream: FakeUpstream,
    start_gateway: Callable[..., str],
    headers: dict[str, str],
    prompt_words: int,
    model: str,
    reason: str,
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url))  # type: ignore[attr-defined]
    with sdk(url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages("word " * prompt_words), extra_headers=headers
        )
    answer = raw.parse()
    sent = fake_upstream.last
    assert sent is not None and sent.json["model"] == model
    assert answer.model == model
    assert raw.headers["X-Gateway-Model"] == model
    assert raw.headers["X-Gateway-Route-Reason"] == reason


def test_decisions_logged_in_redis_and_read_back(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url, store={"url": redis_url}))  # type: ignore[attr-defined]
    with sdk(url) as client:
        first = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages(), extra_headers={"X-Task-Type": "test", "X-Priority": "P1"}
        )
        client.chat.completions.create(
            model="auto", messages=messages(), max_tokens=300, extra_headers={"X-Task-Type": "creative"}
        )
        client.chat.completions.create(model="gpt-4o-mini", messages=messages())  # not routed: no entry
    newest, oldest = routing_log(url, wait_for=2)
    assert oldest["request_id"] == first.headers["X-Request-Id"]
    assert oldest["agent"] == "agent-1" and oldest["kind"] == "decision"
    assert (oldest["task_type"], oldest["priority"]) == ("test", "P1")
    assert (oldest["requested_model"], oldest["chosen_model"], oldest["rule"]) == (
        "auto",
        "gpt-4.1-mini",
        "refactor-qa-test",
    )
    assert isinstance(oldest["prompt_tokens_estimate"], int) and oldest["prompt_tokens_estimate"] > 0
    assert oldest["time"].endswith("+00:00")
    assert (newest["chosen_model"], newest["rule"], newest["max_output_tokens"]) == (
        "gpt-4.1",
        "creative-architecture",
        300,
    )
    assert [e["rule"] for e in routing_log(url, limit=1)] == ["creative-architecture"]
    stream = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        rows = stream.xrange("model_routing_log")
    finally:
        stream.close()
    assert [fields["chosen_model"] for _, fields in rows] == ["gpt-4.1-mini", "gpt-4.1"]


def test_memory_store_serves_the_same_endpoint(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url))  # type: ignore[attr-defined]
    with sdk(url) as client:
        client.completions.create(model="auto", prompt="say hi", extra_headers={"X-Task-Type": "qa"})
    [entry] = routing_log(url)
    assert (entry["chosen_model"], entry["rule"]) == ("gpt-4.1-mini", "refactor-qa-test")
    assert fake_upstream.last is not None and fake_upstream.last.json["model"] == "gpt-4.1-mini"


def test_fallback_is_followed_and_logged(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url))  # type: ignore[attr-defined]
    fake_upstream.fail_model("gpt-4.1", status=500)
    with sdk(url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages(), extra_headers={"X-Task-Type": "architecture"}
        )
    assert raw.parse().model == "gpt-4o-mini"
    assert raw.headers["X-Gateway-Model"] == "gpt-4o-mini"
    fallback, decision = routing_log(url, wait_for=2)
    assert (decision["chosen_model"], decision["rule"]) == ("gpt-4.1", "creative-architecture")
    assert fallback["kind"] == "fallback" and fallback["rule"] == "fallback"
    assert (fallback["from_model"], fallback["chosen_model"]) == ("gpt-4.1", "gpt-4o-mini")
    assert fallback["request_id"] == decision["request_id"] == raw.headers["X-Request-Id"]


def test_context_guard(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> None:
    policy = routing_policy(fake_upstream.url)
    policy["models"]["gpt-4o-mini"]["context_window"] = 2_000
    policy["models"]["gpt-4.1-mini"]["context_window"] = 2_000
    policy["models"]["gpt-4.1"]["context_window"] = 8_000
    url = start_gateway(policy)
    before = fake_upstream.count("/v1/chat/completions")
    with sdk(url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages(), max_tokens=3_000, extra_headers={"X-Task-Type": "refactor"}
        )
        assert raw.headers["X-Gateway-Model"] == "gpt-4.1"
        assert raw.headers["X-Gateway-Route-Reason"] == "rule:refactor-qa-test;context-guard"
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="auto", messages=messages(), max_tokens=10_000)
    assert info.value.code == "context_length_exceeded"
    assert "does not fit the context window" in info.value.message and "gpt-4.1" in info.value.message
    assert fake_upstream.count("/v1/chat/completions") == before + 1, (
        "a rejected request never reaches the provider"
    )


def test_models_list_aliases_and_embeddings_refuse_them(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url))  # type: ignore[attr-defined]
    with sdk(url) as client:
        models = {m.id: m.owned_by for m in client.models.list()}
        assert models["auto"] == "gateway" and models["gpt-4.1"] == "openai"
        assert client.models.retrieve("auto").owned_by == "gateway"
        with pytest.raises(openai.NotFoundError) as info:  # like OpenAI for a model it does not have
            client.embeddings.create(model="auto", input="hi")
    assert info.value.param == "model" and info.value.code == "model_not_found"


def test_admin_route_needs_the_key_and_a_valid_limit(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(routing_policy(fake_upstream.url))  # type: ignore[attr-defined]
    assert httpx.get(url + "/admin/routing-log").status_code == 401
    wrong = httpx.get(url + "/admin/routing-log", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert wrong.status_code == 401
    for limit in ("0", "abc", "10001", "-3"):
        reply = httpx.get(
            url + "/admin/routing-log",
            params={"limit": limit},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "limit"
    assert routing_log(url, limit=None, wait_for=0) == []


def saved_usd(url: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return float(
        next(line for line in lines if line.startswith("llm_routing_cost_saved_usd_total ")).split()[1]
    )


def test_metrics_count_decisions_and_savings(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    policy = routing_policy(fake_upstream.url)
    policy["models"]["gpt-4.1"]["price"] = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    policy["models"]["gpt-4.1-mini"]["price"] = {"input_per_mtok": 0.4, "output_per_mtok": 1.6}
    url = start_gateway(policy)
    before = saved_usd(url)
    with sdk(url) as client:
        client.chat.completions.create(
            model="auto", messages=messages(), max_tokens=1000, extra_headers={"X-Task-Type": "qa"}
        )
    lines = httpx.get(url + "/metrics").text.splitlines()
    labels = ('requested="auto"', 'chosen="gpt-4.1-mini"', 'rule="refactor-qa-test"')
    assert any(
        line.startswith("llm_routing_decisions_total{") and all(label in line for label in labels)
        for line in lines
    )
    [entry] = routing_log(url)
    prompt = entry["prompt_tokens_estimate"]
    expected = (2.0 - 0.4) * prompt / 1e6 + (8.0 - 1.6) * 1000 / 1e6  # against gpt-4.1, the largest
    assert entry["saved_usd"] == pytest.approx(expected)
    assert saved_usd(url) - before == pytest.approx(expected)


SHIPPED_ROUTING = yaml.safe_load((Path(__file__).parents[1] / "policies" / "default.yaml").read_text())[
    "routing"
]
BUDGET_PROMPT = [{"role": "user", "content": "budget budget budget budget"}]
COST = 16
"""Prompt 11 (estimate and fake count agree) + 5 completion tokens (see ``tests/test_budget_e2e.py``)."""


def test_p0_keeps_the_medium_tier_on_a_low_budget(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    """The shipped routing past 80 % of the budget: the low-budget rule and the downgrade both apply,
    and P0 still gets the medium tier while other work gets the small one."""
    sprint = {"id": "s1", "total_tokens": 12 * COST, "agents": ["agent-1"]}  # alert_at 0.8, downgrade on
    policy = routing_policy(fake_upstream.url, budgets={"sprints": [sprint]})  # type: ignore[attr-defined]
    policy["routing"] = SHIPPED_ROUTING
    url = start_gateway(policy)

    def ask(priority: str, model: str = "auto") -> Any:
        with sdk(url) as client:
            return client.chat.completions.with_raw_response.create(
                model=model, messages=BUDGET_PROMPT, max_tokens=5, extra_headers={"X-Priority": priority}
            )

    fresh = ask("P2")
    assert (fresh.headers["X-Gateway-Model"], fresh.headers["X-Gateway-Route-Reason"]) == (
        "gpt-4o-mini",
        "default",
    )
    for _ in range(9):
        ask("P2", model="gpt-4o-mini")
    assert fresh.headers["X-Budget-Remaining-Tokens"] == str(11 * COST), "each request costs COST"
    urgent = ask("P0")  # 10 of 12 spent: 83 % used
    assert (urgent.headers["X-Gateway-Model"], urgent.headers["X-Gateway-Route-Reason"]) == (
        "gpt-4.1-mini",
        "rule:low-budget",
    )
    assert urgent.parse().model == "gpt-4.1-mini"
    routine = ask("P2")  # 11 of 12 spent
    assert (routine.headers["X-Gateway-Model"], routine.headers["X-Gateway-Route-Reason"]) == (
        "gpt-4o-mini",
        "rule:low-budget",
    )
    sent = [r.json["model"] for r in fake_upstream.requests if r.path.endswith("/chat/completions")]
    assert sent[-2:] == ["gpt-4.1-mini", "gpt-4o-mini"]
