"""Rate limits in one process: the policy's rules become buckets, refusals are OpenAI's 429 with the
headers its SDK reads, every answer carries the remaining figures, and providers' own rate-limit headers
hold requests back before the provider refuses them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from gateway.context import Outcome, Request, Usage
from gateway.errors import GatewayError
from gateway.limits import Limiter
from gateway.limits.headers import duration
from gateway.limits.provider import ProviderWatch, seconds_of
from gateway.metrics import LabelLimiter
from gateway.policy import Policy
from gateway.policy.limits import ProviderHeadersConfig
from gateway.protocols import CHAT
from gateway.store import StoreError
from gateway.tickets import MemoryTickets
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.background import BackgroundServer
from tests.fakes.upstream import FakeUpstream

KEY = {"Authorization": f"Bearer {GATEWAY_KEY}"}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(rules: list[dict[str, Any]], clock: Clock) -> Limiter:
    policy = Policy.model_validate(
        {"limits": {"rules": rules, "brake": {"enabled": False}}, "models": {}, "providers": {}}
    )
    return Limiter(policy, MemoryTickets(), lambda event: None, LabelLimiter(10), clock)


def request(agent: str = "a1", team: str = "t1", max_tokens: int = 100) -> Request:
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return Request(uuid.uuid4().hex, CHAT, agent, team, body=body, requested_model="m1", prompt_estimate=10)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.02, "20ms"), (1, "1s"), (1.2, "2s"), (360, "6m0s"), (3723, "1h2m3s")]
)
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("6m0s", 360),
        ("1h2m3.5s", 3723.5),
        ("1.5", 1.5),
        ("1970-01-01T00:01:00Z", 60),
        ("x", None),
    ],
)
def test_provider_resets_are_read_in_every_format(text: str, seconds: float | None) -> None:
    assert seconds_of(text, 0) == (None if seconds is None else pytest.approx(seconds))


async def test_headers_follow_the_tightest_bucket_and_refusal_is_openai_shaped() -> None:
    clock = Clock()
    limits = limiter(
        [{"scope": "agent", "rpm": 3, "tpm": 1000}, {"scope": "team", "match": "t1", "rpm": 10}], clock
    )
    remaining = []
    for _ in range(3):
        admission = await limits.admit(request(), KEY)
        assert admission is not None
        remaining.append(admission.headers["x-ratelimit-remaining-requests"])
        clock.now += 10
    assert remaining == ["2", "1", "0"]
    assert admission.headers["x-ratelimit-limit-requests"] == "3"  # the agent's, not the team's 10
    assert admission.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert admission.headers["x-ratelimit-remaining-tokens"] == str(1000 - 3 * 110)
    with pytest.raises(GatewayError) as refused:
        await limits.admit(request(), KEY)
    error = refused.value
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert error.headers["Retry-After"] == "30"  # the first request (t=1000) leaves the window at 1060
    assert error.headers["retry-after-ms"] == "30000"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert "requests of agent 'a1': limit 3 per 60s" in error.message
    await limits.admit(request(agent="a2"), KEY)  # each agent has its own counter


async def test_settle_gives_back_the_unused_estimate_and_the_slot() -> None:
    clock = Clock()
    limits = limiter([{"scope": "key", "tpm": 1000, "concurrency": 1}], clock)
    asked = request(max_tokens=500)
    admission = await limits.admit(asked, KEY)
    assert admission is not None and admission.headers["x-ratelimit-remaining-tokens"] == "490"
    with pytest.raises(GatewayError, match="requests in flight of key"):
        await limits.admit(request(), KEY)
    task = limits.settle(admission, Outcome(asked, "m1", usage=Usage(10, 40)))
    assert task is not None
    await task
    after = await limits.admit(request(max_tokens=100), KEY)
    assert after is not None and after.headers["x-ratelimit-remaining-tokens"] == str(1000 - 50 - 110)


async def test_a_rule_for_one_name_leaves_the_others_alone() -> None:
    limits = limiter([{"scope": "team", "match": "t9", "rpm": 1}], Clock())
    for _ in range(5):
        assert await limits.admit(request(), KEY) is None  # no bucket, no brake: nothing to settle


def test_provider_headers_count_down_until_the_reset() -> None:
    watch = ProviderWatch(ProviderHeadersConfig())
    watch.observe("p", {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "30s"}, 0.0)
    assert watch.wait("p", 10, 1.0) is None
    assert watch.wait("p", 10, 2.0) is None
    assert watch.wait("p", 10, 3.0) == pytest.approx(27.0)
    assert watch.wait("p", 10, 30.0) is None  # the provider's window has reset
    watch.observe("q", {"anthropic-ratelimit-tokens-remaining": "50"}, 0.0)
    assert watch.wait("q", 60, 0.5) is not None and watch.wait("q", 40, 0.5) is None


def test_provider_headers_off_are_ignored() -> None:
    watch = ProviderWatch(ProviderHeadersConfig(enabled=False))
    watch.observe("p", {"x-ratelimit-remaining-requests": "0"}, 0.0)
    assert watch.wait("p", 1, 0.1) is None


def _counting_provider(calls: list[int]) -> web.Application:
    """A provider that reports 2 requests per window, counting down, reset in 30 s."""

    async def chat(request: web.Request) -> web.Response:
        calls.append(1)
        answer = {
            "id": "c",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
        headers = {
            "x-ratelimit-remaining-requests": str(max(0, 2 - len(calls))),
            "x-ratelimit-reset-requests": "30s",
        }
        return web.json_response(answer, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_the_gateway_holds_back_once_the_provider_says_it_is_out(start_gateway: Callable[..., str]) -> None:
    calls: list[int] = []
    provider = BackgroundServer(_counting_provider(calls)).start()
    try:
        gateway = start_gateway(base_policy(provider.url))
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=gateway, headers=KEY) as http:
            first = http.post("/v1/chat/completions", json=body)
            assert first.status_code == 200
            assert first.headers["x-ratelimit-remaining-requests"] == "1"  # the provider's, relayed
            assert http.post("/v1/chat/completions", json=body).status_code == 200
            held = http.post("/v1/chat/completions", json=body)
        assert held.status_code == 429 and held.json()["error"]["code"] == "rate_limit_exceeded"
        assert 25 <= int(held.headers["Retry-After"]) <= 30
        assert len(calls) == 2  # the third never reached the provider
    finally:
        provider.stop()


def test_every_answer_carries_the_remaining_figures(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    rules = [{"scope": "agent", "rpm": 100, "tpm": 100_000}]
    gateway = start_gateway(base_policy(fake_upstream.url, limits={"rules": rules}))  # type: ignore[attr-defined]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    with httpx.Client(base_url=gateway, headers=KEY) as http:
        plain = http.post("/v1/chat/completions", json=body)
        streamed = http.post("/v1/chat/completions", json={**body, "stream": True})
        fake_upstream.fail_next(times=3, status=500)  # every retry fails: the error answer counts too
        failed = http.post("/v1/chat/completions", json=body)
    assert plain.headers["x-ratelimit-remaining-requests"] == "99"
    assert streamed.headers["x-ratelimit-remaining-requests"] == "98"
    assert streamed.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(streamed.headers["x-ratelimit-remaining-tokens"]) < 100_000
    assert failed.status_code >= 500 and failed.headers["x-ratelimit-remaining-requests"] == "97"


class DownTickets(MemoryTickets):
    """A ticket store whose Redis cannot be reached."""

    async def consume(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("redis: ConnectionError")


@pytest.mark.parametrize(("choice", "refused"), [("allow", False), ("deny", True)])
async def test_a_store_outage_lets_requests_through_or_refuses_them_as_the_policy_says(
    choice: str, refused: bool
) -> None:
    policy = Policy.model_validate(
        {"limits": {"rules": [{"scope": "agent", "rpm": 5}], "on_store_error": choice}, "models": {}}
    )
    limits = Limiter(policy, DownTickets(), lambda event: None, LabelLimiter(10), Clock())
    if not refused:
        assert await limits.admit(request(), KEY) is None  # through, unlimited: nothing to settle
        return
    with pytest.raises(GatewayError) as info:
        await limits.admit(request(), KEY)
    assert (info.value.status, info.value.code) == (503, "rate_limit_unavailable")
    assert info.value.headers["Retry-After"] == "1"
