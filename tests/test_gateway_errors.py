"""Bad input and provider failures: every error is OpenAI-shaped, with the status the SDK maps."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.admin.budgets import MAX_ADJUST
from gateway.context import BatchResult, Outcome, Request, Route
from gateway.pipeline import response_headers
from gateway.protocols import CHAT
from gateway.upstream import Target
from gateway.validation import MAX_DEPTH
from tests.conftest import ADMIN_KEY, GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]
GOOD = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    return error


@pytest.mark.parametrize(
    ("body", "headers", "status", "param"),
    [
        (b"{not json", AUTH, 400, None),
        (b"[1, 2]", AUTH, 400, None),
        (b"", AUTH, 400, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', AUTH, 400, "model"),
        (b'{"model": 5, "messages": []}', AUTH, 400, "model"),
        (b'{"model": "gpt-4o-mini\\r\\nX-Evil: 1", "messages": [{"role": "user"}]}', AUTH, 400, "model"),
        (
            b'{"model": "gpt-4o-mini\\u0000", "messages": [{"role": "user"}], "stream": true}',
            AUTH,
            400,
            "model",
        ),
        (b'{"model": "gpt-4o-mini", "messages": []}', AUTH, 400, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', AUTH, 400, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": [5]}', AUTH, 400, "messages[0]"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}', AUTH, 400, "stream"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": 2.5}',
            AUTH,
            400,
            "max_tokens",
        ),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "n": "2"}', AUTH, 400, "n"),
        (b'{"model": "nope", "messages": [{"role": "user"}]}', AUTH, 404, "model"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}', {}, 401, None),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
            {"Authorization": "Bearer bad"},
            401,
            None,
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
            {**AUTH, "X-Priority": "P9"},
            400,
            "X-Priority",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
            {**AUTH, "X-Lines-Estimate": "x"},
            400,
            "X-Lines-Estimate",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
            {**AUTH, "X-Batchable": "maybe"},
            400,
            "X-Batchable",
        ),
    ],
)
def test_bad_inputs(
    gateway: str, body: bytes, headers: dict[str, str], status: int, param: str | None
) -> None:
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )
    error = assert_openai_error(response, status)
    assert error["param"] == param
    assert response.headers["X-Request-Id"]


def test_embeddings_and_completions_validate(gateway: str) -> None:
    for path, body in (
        ("embeddings", {"model": "text-embedding-3-small"}),
        ("completions", {"model": "gpt-4o-mini"}),
    ):
        response = httpx.post(f"{gateway}/v1/{path}", json=body, headers=AUTH)
        assert assert_openai_error(response, 400)["param"] in ("input", "prompt")


def test_embeddings_are_not_streamed(gateway: str) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "stream": True}
    response = httpx.post(f"{gateway}/v1/embeddings", json=body, headers=AUTH)
    assert assert_openai_error(response, 400)["param"] == "stream"


def nested(depth: int) -> dict[str, Any]:
    """A chat body whose deepest container lies ``depth`` levels down (the body itself is level 1)."""
    return {**GOOD, "metadata": orjson.loads(b"[" * (depth - 1) + b"]" * (depth - 1))}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1000])
def test_too_deep_bodies_are_400(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], depth: int
) -> None:
    gateway = start_gateway(base_policy(fake_upstream.url, cache={"enabled": True}))
    raw = orjson.dumps(nested(min(depth, 200)))  # orjson writes at most 254 levels: splice the rest in
    raw = raw.replace(b"[]", b"[" * (depth - 200) + b"]" * (depth - 200)) if depth > 200 else raw
    response = httpx.post(f"{gateway}/v1/chat/completions", content=raw, headers=AUTH)
    error = assert_openai_error(response, 400)
    assert error["code"] == "invalid_json" and str(MAX_DEPTH) in error["message"]
    assert not fake_upstream.requests


def test_deepest_allowed_body_is_served(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    gateway = start_gateway(base_policy(fake_upstream.url, cache={"enabled": True}))
    for _ in range(2):  # a miss (the cache key, the provider call, the store), then a hit
        response = httpx.post(f"{gateway}/v1/chat/completions", json=nested(MAX_DEPTH), headers=AUTH)
        assert response.status_code == 200, response.text
    assert response.headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    "given",
    [b"\xff\xfe-not-utf-8", b"a" * 129, b"two words", "caf\u00e9".encode()],
)
def test_unsafe_request_ids_are_replaced(gateway: str, given: bytes) -> None:
    response = httpx.post(
        f"{gateway}/v1/chat/completions", json=GOOD, headers={**AUTH, "X-Request-Id": given}
    )
    assert response.status_code == 200, response.text
    echoed = response.headers["X-Request-Id"]
    assert echoed.encode() != given and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_a_clean_request_id_is_kept(gateway: str) -> None:
    given = "run-42/step:7@agent=a.b_c"
    response = httpx.post(
        f"{gateway}/v1/chat/completions", json=GOOD, headers={**AUTH, "X-Request-Id": given}
    )
    assert response.status_code == 200 and response.headers["X-Request-Id"] == given


def test_echoed_headers_never_carry_control_characters() -> None:
    asked = Request("r\r\n1", CHAT, "a", "t")
    target = Target("m", "m", None, None)  # type: ignore[arg-type]
    route = Route(target, "gpt-4o-mini\r\nSet-Cookie: x=1", "requested\x00")
    headers = response_headers(Outcome(asked, route.model, route, batch=BatchResult("b\x7f", 2)))
    assert headers["X-Gateway-Model"] == "gpt-4o-miniSet-Cookie: x=1"
    assert not any(re.search(r"[\x00-\x1f\x7f]", value) for value in headers.values())


@pytest.mark.parametrize("tokens", [10**17, -(10**17), MAX_ADJUST + 1])
def test_budget_adjustments_are_bounded(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str, tokens: int
) -> None:
    sprint = {"id": "s1", "total_tokens": 1000, "agents": ["agent-1"]}
    policy = base_policy(fake_upstream.url, budgets={"sprints": [sprint]}, store={"url": redis_url})
    gateway = start_gateway(policy)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.post(f"{gateway}/admin/budgets/s1/adjust", json={"tokens": tokens}, headers=admin)
    assert assert_openai_error(response, 400)["param"] == "tokens"
    allowed = httpx.post(f"{gateway}/admin/budgets/s1/adjust", json={"tokens": MAX_ADJUST}, headers=admin)
    assert allowed.status_code == 200 and allowed.json()["sprint"]["adjustment"] == MAX_ADJUST


def test_huge_body_is_413(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> None:
    url = start_gateway(base_policy(fake_upstream.url, server={"max_body_bytes": 4096}))  # type: ignore[attr-defined]
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_openai_error(httpx.post(f"{url}/v1/chat/completions", json=big, headers=AUTH), 413)
    assert fake_upstream.count() == 0


def test_unknown_routes_and_methods(gateway: str) -> None:
    assert_openai_error(httpx.get(f"{gateway}/nothing-here"), 404)
    assert_openai_error(httpx.put(f"{gateway}/healthz"), 405)
    assert_openai_error(httpx.get(f"{gateway}/admin/whatever"), 401)
    assert_openai_error(
        httpx.get(f"{gateway}/admin/whatever", headers={"Authorization": "Bearer gw-admin-key"}), 404
    )


@pytest.mark.parametrize(
    ("make_call", "exception"),
    [
        (lambda c: c.chat.completions.create(model="nope", messages=MESSAGES), openai.NotFoundError),
        (lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=[]), openai.BadRequestError),
        (
            lambda c: c.with_options(default_headers={"X-Priority": "P7"}).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            ),
            openai.BadRequestError,
        ),
        (
            lambda c: c.with_options(api_key="wrong").chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            ),
            openai.AuthenticationError,
        ),
    ],
)
def test_sdk_raises_matching_exceptions(client: openai.OpenAI, make_call: Any, exception: type) -> None:
    with pytest.raises(exception):
        make_call(client)


def test_429_with_retry_after_is_retried(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail_next(times=1, status=429, retry_after=0.3)
    started = time.monotonic()
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo: hi"
    assert fake_upstream.count("/v1/chat/completions") == 2
    first, second = fake_upstream.requests[-2:]
    assert second.at - first.at >= 0.28, "Retry-After must be honoured"
    assert time.monotonic() - started < 3


def test_persistent_429_reaches_client_as_rate_limit(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail_next(times=10, status=429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_upstream.count("/v1/chat/completions") == 3
    assert info.value.response.headers.get("Retry-After") == "0.01"


def test_5xx_retried_then_502(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail_next(times=2, status=500)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    fake_upstream.fail_next(times=3, status=503)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == 502
    assert fake_upstream.count("/v1/chat/completions") == 6


def test_connection_drop_is_retried(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.drop_connection_next(times=1)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_fallback_model_answers(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail_model("gpt-4.1", status=500)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4.1", messages=MESSAGES)
    assert raw.headers["X-Gateway-Model"] == "gpt-4o-mini"
    assert raw.parse().model == "gpt-4o-mini"
    models = [r.json["model"] for r in fake_upstream.requests]
    assert models == ["gpt-4.1"] * 3 + ["gpt-4o-mini"]


def test_upstream_client_error_is_relayed_not_retried(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail_next(times=1, status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert fake_upstream.count() == 1


def test_timeout_is_504(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> None:
    policy = base_policy(fake_upstream.url)  # type: ignore[attr-defined]
    policy["providers"]["openai"]["timeout_s"] = 0.3
    policy["providers"]["openai"]["retry"] = {"attempts": 1}
    url = start_gateway(policy)
    fake_upstream.hang_next(times=1, seconds=3)
    response = httpx.post(f"{url}/v1/chat/completions", json=GOOD, headers=AUTH, timeout=10)
    assert assert_openai_error(response, 504)["code"] == "upstream_timeout"


def test_broken_stream_raises_in_sdk(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.break_stream_next(times=1, after_chunks=2)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_wrong_provider_key_never_leaks(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.expected_key = "sk-something-else"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    text = info.value.response.text
    assert info.value.status_code == 502 and "credentials" in text
    assert PROVIDER_KEY not in text and PROVIDER_KEY[-4:] not in text
