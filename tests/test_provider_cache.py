"""The provider's own prompt cache as a saving: priced at the cached rate, recorded, reported."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.context import CacheOutcome, Outcome, Request, Usage
from gateway.ledger.record import Finished, RecordBuilder
from gateway.ledger.schema import LedgerRecord
from gateway.policy import Policy
from gateway.pricing import PriceBook, TokenPrice
from gateway.protocols import CHAT
from gateway.reporting.kpis import summarize
from gateway.reporting.outcome import recorded
from gateway.reporting.report import as_json
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.provider_model import PrefixCache
from tests.fakes.upstream import FakeUpstream
from tests.ledger_helpers import file_lines, running
from tests.test_gateway_ops import metric

PRICE = TokenPrice(input=2e-6, output=8e-6, cached_input=0.5e-6, cache_write=2e-6, source="test")


def _record(usage: Usage, cache: str = "MISS") -> LedgerRecord:
    policy = Policy.model_validate(
        {
            "providers": {"p": {"type": "openai", "base_url": "http://x/v1"}},
            "models": {"m": {"provider": "p"}},
        }
    )
    builder = RecordBuilder(policy, PriceBook({"m": PRICE}))
    asked = Request("r", CHAT, "a", "t", requested_model="m")
    outcome = Outcome(asked, "m", cache=CacheOutcome(cache), usage=usage)
    return builder.build(Finished("r", "/v1/chat/completions", 200, 1_700_000_000.0, 0.2), outcome)


def test_cached_input_is_priced_at_the_cached_rate_and_its_saving_recorded() -> None:
    record = _record(Usage(2000, 100, 1536))
    assert record.cache_read_tokens == 1536
    assert record.cost_usd == pytest.approx(464 * 2e-6 + 1536 * 0.5e-6 + 100 * 8e-6)
    assert record.provider_cache_saved_usd == pytest.approx(1536 * 1.5e-6)
    assert record.baseline_cost_usd == pytest.approx(2000 * 2e-6 + 100 * 8e-6), "baseline at the full rate"
    again = LedgerRecord.from_record(record.to_record())
    assert (
        again.cache_read_tokens == 1536 and again.provider_cache_saved_usd == record.provider_cache_saved_usd
    )


def test_usage_without_cached_tokens_claims_no_provider_saving() -> None:
    record = _record(Usage(2000, 100))
    assert record.cache_read_tokens is None and record.provider_cache_saved_usd is None
    assert record.cost_usd == pytest.approx(2000 * 2e-6 + 100 * 8e-6)


def test_a_cache_hit_claims_no_provider_cache_read() -> None:
    record = _record(Usage(2000, 100, 1536), cache="HIT")
    assert record.cache_read_tokens is None and record.provider_cache_saved_usd is None
    assert record.cost_usd == 0


def test_report_counts_provider_cache_beside_the_gateways_savings() -> None:
    records = [_record(Usage(2000, 100, 1536)), _record(Usage(1200, 50, 1024))]
    body = as_json(summarize(recorded(r) for r in records))
    assert body["tokens"]["saved_provider_cache"] == 1536 + 1024
    assert body["cost"]["provider_cache_saved_usd"] == pytest.approx((1536 + 1024) * 1.5e-6)


def test_report_shows_the_gateways_own_added_time() -> None:
    plain = LedgerRecord("a", "chat.completions", 200, 1.0, latency_ms=300.0, upstream_ms=297.0, cache="MISS")
    waited = LedgerRecord(
        "b",
        "chat.completions",
        200,
        1.0,
        latency_ms=500.0,
        upstream_ms=480.0,
        batch_wait_ms=100.0,
        cache="MISS",
    )
    hit = LedgerRecord("c", "chat.completions", 200, 1.0, latency_ms=2.0, cache="HIT")
    added = sorted(o.added_ms for o in map(recorded, (plain, waited, hit)))  # type: ignore[type-var]
    assert added == pytest.approx([2.0, 3.0, 120.0]), "a batch's wait for partners is the gateway's time"
    kpis = summarize(recorded(r) for r in (plain, waited, hit)).kpis()
    assert kpis["p95_added_ms"] == pytest.approx(120.0) and kpis["p95_latency_ms"] == 500.0


def test_a_hit_on_a_batched_answer_saved_what_it_cost_alone() -> None:
    miss = LedgerRecord(
        "a",
        "chat.completions",
        200,
        1.0,
        latency_ms=900.0,
        cache="MISS",
        cache_key="k",
        batch_id="b",
        tokens_used=100,
        tokens_saved=300,
        saved_reason="batch",
    )
    hit = LedgerRecord(
        "b",
        "chat.completions",
        200,
        2.0,
        latency_ms=2.0,
        cache="HIT",
        cache_key="k",
        tokens_used=0,
        tokens_saved=100,
        saved_reason="cache",
    )
    summary = summarize(recorded(r) for r in (miss, hit))
    assert summary.saved_cache == 400 and summary.saved_batch == 300
    assert summary.baseline_tokens == 800, "both requests at their cost alone"


def _reads(url: str) -> float:
    return metric(httpx.get(f"{url}/metrics").text, "provider_cache_tokens_total", kind="read")


LONG_SYSTEM = (
    "You review Python for the payments team; keep functions small and typed. " * 80
)  # ~1,500 tokens
OTHER_KEY = "gw-test-key-frontend"


def test_same_prefix_same_scope_lands_on_the_warm_provider_cache_and_is_counted(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    fake_upstream.prefix_cache = PrefixCache(engines=64, seed=3)  # without a key, a warm engine is unlikely
    ledger = tmp_path / "ledger.jsonl"
    priced = {
        "provider": "openai",
        "price": {"input_per_mtok": 2, "output_per_mtok": 8, "cached_input_per_mtok": 0.5},
    }
    keys = [
        {"key": GATEWAY_KEY, "agent": "dev-1", "team": "backend"},
        {"key": OTHER_KEY, "agent": "fe-1", "team": "frontend"},
    ]
    policy = base_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        ledger={"enabled": True, "file": str(ledger), "heartbeat_interval_s": 0},
        auth={"keys": keys},
        models={"gpt-4o-mini": priced},
    )
    asks = [
        ("first", GATEWAY_KEY, "rename x"),
        ("second", GATEWAY_KEY, "inline y"),
        ("other-team", OTHER_KEY, "rename x"),
    ]
    with running(policy) as url:
        before = _reads(url)
        answers = {}
        for request_id, key, task in asks:
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": task}],
            }
            headers = {"Authorization": f"Bearer {key}", "X-Request-Id": request_id}
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=5)
            assert reply.status_code == 200
            answers[request_id] = reply.json()["usage"]
        counted = _reads(url) - before
    sent = [
        r.json["prompt_cache_key"] for r in fake_upstream.requests if r.path.endswith("/chat/completions")
    ]
    assert len(sent) == 3 and sent[0] == sent[1] != sent[2], "stable within a scope, another scope's own"
    assert all(k.startswith("llmgw-") and "backend" not in k for k in sent)
    cached = answers["second"]["prompt_tokens_details"]["cached_tokens"]
    assert answers["first"]["prompt_tokens_details"]["cached_tokens"] == 0 and cached >= 1024
    records = {r["request_id"]: r for r in file_lines(ledger)[0]}
    assert records["second"]["cache_read_tokens"] == cached and "cache_read_tokens" not in records["first"]
    assert records["second"]["provider_cache_saved_usd"] == pytest.approx(cached * 1.5e-6)
    assert counted == cached + answers["other-team"]["prompt_tokens_details"]["cached_tokens"]
