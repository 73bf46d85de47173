"""Errors on ``/v1/messages*`` are Anthropic's shape and status codes, so the ``anthropic`` SDK raises the
right class; provider overloads (529) and rate limits (429 with ``retry-after``) are retried; and
``count_tokens`` is identified, relayed and never charged to a budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam

from tests.conftest import ADMIN_KEY, GATEWAY_KEY
from tests.fakes.upstream_anthropic import AnthropicUpstream
from tests.messages_helpers import fake_anthropic, messages_gateway, sdk

__all__ = ["fake_anthropic", "messages_gateway"]

USER: list[MessageParam] = [{"role": "user", "content": "hello"}]
ASK: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": USER}


def _shape(error: anthropic.APIStatusError, kind: str) -> None:
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == kind and body["error"]["message"]


@pytest.mark.parametrize(
    ("call", "exception", "kind"),
    [
        (lambda c: c.messages.create(**{**ASK, "model": "nope"}), anthropic.NotFoundError, "not_found_error"),
        (
            lambda c: c.messages.create(**{**ASK, "messages": []}),
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
    ],
)
def test_bad_requests_raise_the_sdks_classes(
    messages_gateway: Callable[..., str], call: Any, exception: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(exception) as raised:
        call(sdk(messages_gateway()))
    _shape(raised.value, kind)


def test_a_wrong_key_is_an_authentication_error(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk(messages_gateway(), key="wrong-key").messages.create(**ASK)
    _shape(raised.value, "authentication_error")
    assert not fake_anthropic.messages()


@pytest.mark.parametrize(
    "raw", [b"{", b'{"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}']
)
def test_invalid_json_or_no_max_tokens_is_an_invalid_request_error(
    messages_gateway: Callable[..., str], raw: bytes
) -> None:
    reply = httpx.post(f"{messages_gateway()}/v1/messages", headers={"x-api-key": GATEWAY_KEY}, content=raw)
    assert reply.status_code == 400
    assert reply.json()["type"] == "error" and reply.json()["error"]["type"] == "invalid_request_error"


def test_an_exhausted_budget_is_a_rate_limit_error_the_sdk_does_not_retry(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(budgets={"sprints": [{"id": "s1", "total_tokens": 50, "agents": ["agent-1"]}]})
    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk(url, max_retries=2).messages.create(**{**ASK, "max_tokens": 4096})
    _shape(raised.value, "rate_limit_error")
    assert "tokens left" in str(raised.value)
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert not fake_anthropic.messages()


def test_an_overloaded_provider_is_retried(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    fake_anthropic.fail_next(529, times=2)
    answer = sdk(url).messages.create(**ASK)
    assert answer.content[0].type == "text" and answer.content[0].text == "echo: hello"
    assert len(fake_anthropic.messages()) == 3


def test_a_rate_limited_provider_is_retried_after_its_retry_after(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    fake_anthropic.fail_next(429, retry_after=0.2)
    sdk(url).messages.create(**ASK)
    first, second = fake_anthropic.messages()
    assert second.at - first.at >= 0.2


def test_a_provider_that_stays_overloaded_is_a_server_error_in_anthropics_shape(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    fake_anthropic.fail_next(529, times=10)
    with pytest.raises(anthropic.InternalServerError) as raised:
        sdk(url).messages.create(**ASK)
    _shape(raised.value, "api_error")
    assert "529" in str(raised.value)


def test_a_provider_400_is_relayed_as_anthropics_error(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    """The strict fake refuses a thinking budget above max_tokens; its own words reach the SDK."""
    with pytest.raises(anthropic.BadRequestError) as raised:
        sdk(messages_gateway()).messages.create(
            **{**ASK, "thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 1024}
        )
    _shape(raised.value, "invalid_request_error")
    assert len(fake_anthropic.messages()) == 1


def test_count_tokens_is_relayed_and_not_charged(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(
        budgets={"sprints": [{"id": "s1", "total_tokens": 100_000, "agents": ["agent-1"]}]}
    )
    counted = sdk(url).messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    assert counted.input_tokens > 0
    assert fake_anthropic.messages("/v1/messages/count_tokens")[0].headers["x-api-key"] != GATEWAY_KEY
    report = httpx.get(f"{url}/admin/budgets", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert report["data"][0]["sprint"]["used"] == 0


def test_count_tokens_errors_are_anthropic_shaped(messages_gateway: Callable[..., str]) -> None:
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk(messages_gateway(), key="wrong").messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    _shape(raised.value, "authentication_error")
