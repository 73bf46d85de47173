"""The provider's own prompt cache as a saving: priced at the cached rate, recorded, reported."""

from __future__ import annotations

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
    assert record.cached_input_tokens == 1536
    assert record.cost_usd == pytest.approx(464 * 2e-6 + 1536 * 0.5e-6 + 100 * 8e-6)
    assert record.provider_cache_saved_usd == pytest.approx(1536 * 1.5e-6)
    assert record.baseline_cost_usd == pytest.approx(2000 * 2e-6 + 100 * 8e-6), "baseline at the full rate"
    again = LedgerRecord.from_record(record.to_record())
    assert (
        again.cached_input_tokens == 1536
        and again.provider_cache_saved_usd == record.provider_cache_saved_usd
    )


def test_usage_without_cached_tokens_claims_no_provider_saving() -> None:
    record = _record(Usage(2000, 100))
    assert record.cached_input_tokens is None and record.provider_cache_saved_usd is None
    assert record.cost_usd == pytest.approx(2000 * 2e-6 + 100 * 8e-6)


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
