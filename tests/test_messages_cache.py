"""Messages through the gateway's cache and accounting: what identifies the caller (``metadata.user_id``,
session headers) stays out of the key, what changes the answer (``thinking``, ``tools``, ``system``,
``anthropic-beta``) stays in; the provider's prompt-cache reads and writes are charged to budgets, priced
at their own rates, and recorded in the ledger and metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.policy import Policy
from gateway.reporting import report
from gateway.reporting.source import Selection
from tests.conftest import ADMIN_KEY, GATEWAY_KEY
from tests.fakes.upstream_anthropic import AnthropicUpstream
from tests.ledger_helpers import file_lines, running
from tests.messages_helpers import fake_anthropic, messages_gateway, messages_policy

__all__ = ["fake_anthropic", "messages_gateway"]

ASK: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "fix the failing test"}],
}
LONG_SYSTEM = [
    {"type": "text", "text": "You are a careful engineer. " * 400, "cache_control": {"type": "ephemeral"}}
]


def _post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    sent = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01", **headers}
    reply = httpx.post(f"{url}/v1/messages", headers=sent, json=body)
    assert reply.status_code == 200, reply.text
    return reply


def test_a_second_session_asking_the_same_is_a_hit(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(cache={"enabled": True})
    first = _post(
        url, {**ASK, "metadata": {"user_id": '{"session_id":"a"}'}}, **{"x-claude-code-session-id": "a"}
    )
    second = _post(
        url, {**ASK, "metadata": {"user_id": '{"session_id":"b"}'}}, **{"x-claude-code-session-id": "b"}
    )
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.json()["content"] == first.json()["content"] and len(fake_anthropic.messages()) == 1


@pytest.mark.parametrize(
    ("change", "headers"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048}, {}),
        ({"system": "Answer in French."}, {}),
        ({"tools": [{"name": "run", "input_schema": {"type": "object"}}]}, {}),
        ({}, {"anthropic-beta": "interleaved-thinking-2025-05-14"}),
    ],
)
def test_what_changes_the_answer_is_in_the_key(
    messages_gateway: Callable[..., str], change: dict[str, Any], headers: dict[str, str]
) -> None:
    url = messages_gateway(cache={"enabled": True})
    assert _post(url, ASK).headers["X-Cache"] == "MISS"
    assert _post(url, {**ASK, **change}, **headers).headers["X-Cache"] == "MISS"
    assert _post(url, {**ASK, **change}, **headers).headers["X-Cache"] == "HIT"


def _sprint_used(url: str) -> int:
    report = httpx.get(f"{url}/admin/budgets", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    return int(report["data"][0]["sprint"]["used"])


@pytest.mark.parametrize("weight", [1.0, 0.1])
def test_budgets_count_prompt_cache_reads_at_the_policy_weight(
    messages_gateway: Callable[..., str], weight: float
) -> None:
    budgets = {"sprints": [{"id": "s1", "total_tokens": 1_000_000, "agents": ["agent-1"]}]}
    url = messages_gateway(budgets={**budgets, "cache_read_weight": weight})
    usages = [_post(url, {**ASK, "system": LONG_SYSTEM}).json()["usage"] for _ in range(2)]
    assert usages[0]["cache_creation_input_tokens"] > 0 and usages[1]["cache_read_input_tokens"] > 0
    expected = sum(
        u["input_tokens"]
        + u["cache_creation_input_tokens"]
        + round(u["cache_read_input_tokens"] * weight)
        + u["output_tokens"]
        for u in usages
    )
    assert _sprint_used(url) == expected


def test_the_ledger_and_metrics_show_the_provider_cache(
    fake_upstream: Any, fake_anthropic: AnthropicUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.jsonl"
    anthropic_url: str = fake_anthropic.url  # type: ignore[attr-defined]
    policy = messages_policy(fake_upstream.url, anthropic_url, ledger={"enabled": True, "file": str(path)})
    with running(policy) as url:
        before = _metric(url, 'provider_cache_tokens_total{kind="read",model="claude-sonnet-4-5"}')
        usages = [_post(url, {**ASK, "system": LONG_SYSTEM}).json()["usage"] for _ in range(2)]
        read = _metric(url, 'provider_cache_tokens_total{kind="read",model="claude-sonnet-4-5"}') - before
        saved = _metric(url, 'provider_cache_saved_usd_total{model="claude-sonnet-4-5"}')
    records, _ = file_lines(path)
    write_record, read_record = (r for r in records if r.get("endpoint") == "messages")
    written, reads = usages[0]["cache_creation_input_tokens"], usages[1]["cache_read_input_tokens"]
    assert write_record["cache_write_tokens"] == written and "cache_read_tokens" not in write_record
    assert read_record["cache_read_tokens"] == reads and read == reads
    # claude-sonnet-4-5: input $3/M, cache writes $3.75/M (1.25x), cache reads $0.30/M (0.1x)
    assert write_record["provider_cache_saved_usd"] == pytest.approx(-written * 0.75e-6)
    assert read_record["provider_cache_saved_usd"] == pytest.approx(reads * 2.7e-6)
    fresh, out = usages[1]["input_tokens"], usages[1]["output_tokens"]
    assert read_record["cost_usd"] == pytest.approx(fresh * 3e-6 + reads * 0.3e-6 + out * 15e-6)
    assert read_record["prompt_tokens"] == fresh + reads
    assert saved >= reads * 2.7e-6 * 0.999
    summary = report.load(str(path), Policy(), Selection(), show_progress=False)[1]
    assert summary.cache_read_tokens == reads
    assert summary.provider_cache_saved_usd == pytest.approx(reads * 2.7e-6 - written * 0.75e-6)
    rows = dict(report.savings_rows(summary))
    assert rows["Read from the provider's prompt cache"] == f"{reads:,}"


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("inject", [False, True])
def test_cache_control_injection_puts_breakpoints_where_the_client_set_none(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream, inject: bool
) -> None:
    url = messages_gateway(providers={"claude": {"inject_cache_control": inject}} if inject else {})
    system = "You are a careful engineer. " * 400  # no cache_control from the client
    tools = [{"name": "run", "description": "Run a command", "input_schema": {"type": "object"}}]
    usages = [_post(url, {**ASK, "system": system, "tools": tools}).json()["usage"] for _ in range(2)]
    sent = fake_anthropic.messages()[0].json
    if inject:
        assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert usages[1]["cache_read_input_tokens"] > 0
    else:
        assert sent["system"] == system and usages[1]["cache_read_input_tokens"] == 0


def test_injection_leaves_a_clients_own_breakpoints_alone(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(providers={"claude": {"inject_cache_control": True}})
    raw = (
        b'{"model": "claude-sonnet-4-5", "max_tokens": 16, "system": [{"type": "text", "text": "x",'
        b' "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "hi"}]}'
    )
    headers = {
        "x-api-key": GATEWAY_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert httpx.post(f"{url}/v1/messages", headers=headers, content=raw).status_code == 200
    assert fake_anthropic.messages()[0].body == raw
