"""Rate limits end to end: two real gateway processes on one Redis admit exactly the limit of 300
concurrent requests, their headers report the shared count, and the openai SDK waits the Retry-After."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.test_budget_e2e import _burst

Serve = Callable[..., tuple[subprocess.Popen[str], str]]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def test_two_gateways_admit_exactly_the_limit_of_300_concurrent(
    serve: Serve, policy_file: Callable[..., Path], fake_upstream: FakeUpstream, redis_url: str
) -> None:
    rules = [
        {"scope": "agent", "rpm": 70, "window_s": 3600},
        {"scope": "team", "rpm": 1000, "tpm": 10**6, "window_s": 3600},
        {"scope": "model", "match": "gpt-4o-mini", "rpm": 500, "window_s": 3600},
    ]
    path = policy_file(store={"url": redis_url}, limits={"rules": rules, "brake": {"enabled": False}})
    urls = [serve(path)[1], serve(path)[1]]
    fake_upstream.latency_s = 0.02
    responses = asyncio.run(_burst(urls, 300, BODY))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(refused)) == (70, 230), "exactly the limit, 0 over, across both replicas"
    assert fake_upstream.count("/v1/chat/completions") == 70
    # each admission saw the shared count: remaining 69 .. 0, each figure once
    seen = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
    assert seen == list(range(70))
    assert {r.headers["x-ratelimit-limit-requests"] for r in admitted} == {"70"}
    for response in refused:
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
    tokens = {int(r.headers["x-ratelimit-remaining-tokens"]) for r in admitted}
    assert len(tokens) == 70 and max(tokens) < 10**6  # the team's tokens bucket, shared too


def test_the_openai_sdk_waits_the_retry_after_and_succeeds(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    rules: list[dict[str, Any]] = [{"scope": "key", "rpm": 1, "window_s": 1.5}]
    url = start_gateway(base_policy(fake_upstream.url, store={"url": redis_url}, limits={"rules": rules}))  # type: ignore[attr-defined]
    with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0) as strict:
        strict.chat.completions.create(**BODY)
        try:
            strict.chat.completions.create(**BODY)
        except openai.RateLimitError as exc:
            assert exc.code == "rate_limit_exceeded"
            assert exc.response.headers["retry-after-ms"]
        else:
            raise AssertionError("a second request within the window must be refused")
    with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=3) as patient:
        raw = patient.chat.completions.with_raw_response.create(**BODY)
    assert raw.http_response.status_code == 200
    assert raw.retries_taken >= 1  # refused at first, then admitted after waiting the gateway's Retry-After
    assert fake_upstream.count("/v1/chat/completions") == 2
