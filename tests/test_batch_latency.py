"""The latency bound of micro-batching: answer-length prediction, decode model, when a group waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.batcher.formation import Formation
from gateway.batcher.latency import DecodeModel, OutputHistory, added_s
from gateway.policy.batching import BatchingConfig
from tests.conftest import base_policy
from tests.fakes.batch_model import batch_responder
from tests.fakes.upstream import FakeUpstream
from tests.test_batcher import many


def test_prediction_uses_max_tokens_then_history() -> None:
    history = OutputHistory(prior_tokens=256)
    assert history.predict("test", "m", None) == 256, "no history: the prior"
    assert history.predict("test", "m", 40) == 40, "max_tokens bounds the answer"
    for tokens in (10, 20, 30, 40, 50):
        history.record("test", "m", tokens)
    assert history.predict("test", "m", None) == 50, "a high quantile of recent answers"
    assert history.predict("test", "m", 30) == 30
    assert history.predict("refactor", "m", None) == 256, "history is per task type"


def test_decode_model_learns_seconds_per_token() -> None:
    decode = DecodeModel(prior_s=0.01)
    assert decode.per_token_s("m") == 0.01
    for tokens in range(10, 200, 20):
        decode.record("m", tokens, 0.150 + 0.008 * tokens)
    assert decode.per_token_s("m") == pytest.approx(0.008)
    assert decode.per_token_s("other") == 0.01


def test_added_decode_time_read_whole_and_streamed() -> None:
    assert added_s([10, 30], 0.01) == pytest.approx([0.3, 0.1]), "read whole: every other answer"
    assert added_s([30, 10, 20], 0.01, streamed=True) == pytest.approx([0.3, 0.0, 0.1]), "shortest first"


def test_bound_admits_only_members_that_stay_under_it() -> None:
    formation = Formation(BatchingConfig(max_added_ms=400))
    assert formation.fits([0.0, 0.0], [0.3, 0.3])
    assert not formation.fits([0.2, 0.0], [0.3, 0.1]), "wait plus decode passes the bound"


def test_opener_goes_at_once_when_partners_stopped_coming() -> None:
    config = BatchingConfig(window_ms=100, min_partner_share=0.3)
    formation = Formation(config)
    now = 0.0
    for _ in range(20):  # lone requests, a second apart: no opener ever got a partner
        formation.arrive("k", now)
        formation.open("k", now)
        now += 1.0
    formation.arrive("k", now)
    assert not formation.open("k", now)
    for _ in range(30):  # bursts: a partner 2 ms after every opener
        formation.arrive("k", now)
        formation.open("k", now)
        formation.arrive("k", now + 0.002)
        now += 1.0
    formation.arrive("k", now)
    assert formation.open("k", now)


def test_group_waits_about_the_gap_partners_came_in() -> None:
    formation = Formation(BatchingConfig(window_ms=100))
    assert formation.wait_s("k") == pytest.approx(0.1), "nothing learned: the window"
    now = 0.0
    for _ in range(20):
        formation.arrive("k", now)
        formation.arrive("k", now + 0.002)
        now += 1.0
    assert 0.001 <= formation.wait_s("k") <= 0.005


def test_tasks_whose_answers_would_cost_too_much_are_not_batched(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    """Two tasks with max_tokens 500: each would wait ~5 s for the other's answer, over the bound."""
    fake_upstream.responder = batch_responder()
    policy = base_policy(fake_upstream.url, batching={"window_ms": 300, "max_added_ms": 400})  # type: ignore[attr-defined]
    url = start_gateway(policy)
    results = asyncio.run(many(url, ["rename a", "rename b"], max_tokens=500))
    assert all("X-Gateway-Batch" not in r.headers for r in results)
    assert fake_upstream.count("/v1/chat/completions") == 2
    fake_upstream.reset()
    fake_upstream.responder = batch_responder()
    results = asyncio.run(many(url, ["rename c", "rename d"], max_tokens=10))
    assert all("X-Gateway-Batch" in r.headers for r in results), "short answers still share a call"
    assert fake_upstream.count("/v1/chat/completions") == 1
