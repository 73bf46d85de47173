"""Bad input and provider failures: every error is OpenAI-shaped, with the status the SDK maps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.testing.upstream import FakeUpstream
from tests.conftest import GATEWAY_KEY, PROVIDER_KEY, base_policy

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
        (b'{"model": "gpt-4o-mini", "messages": []}', AUTH, 400, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', AUTH, 400, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": [5]}', AUTH, 400, "messages[0]"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}', AUTH, 400, "stream"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": -1}',
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
