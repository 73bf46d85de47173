"""The native Anthropic provider against the strict fake Anthropic API: bodies and streams relayed as
bytes, the provider key in ``x-api-key`` and never a client credential, the client's protocol headers
and query string kept, and provider errors returned as replies with their status and headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from gateway.policy.core import ProviderConfig
from gateway.providers import ProviderRequest, UpstreamReply, build_provider
from gateway.providers.anthropic import AnthropicProvider
from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic

KEY = "sk-ant-provider-0123456789"
GATEWAY_KEY = "gw-client-key-0123456789"
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
# odd spacing, key order and an unknown field: a byte relay keeps them all
BODY = (
    b'{"model":"claude-sonnet-4-5",  "max_tokens": 64, "unknown_field": {"x": 1},\n'
    b'"messages":[{"role":"user","content":"hi"}]}'
)
CLIENT_HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Bearer {GATEWAY_KEY}",
    "X-Api-Key": GATEWAY_KEY,
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETA,
    "x-stainless-os": "Linux",
    "x-claude-code-session-id": "4c2457a5-2b4e-42e6-921a-f9f06c70c070",
}


@pytest.fixture
def fake() -> Iterator[tuple[AnthropicUpstream, str]]:
    with serve_anthropic(KEY) as served:
        yield served


@pytest.fixture
async def provider(fake: tuple[AnthropicUpstream, str]) -> AsyncIterator[AnthropicProvider]:
    config = ProviderConfig.model_validate({"type": "anthropic", "base_url": fake[1], "api_key": KEY})
    built = build_provider("claude", config)
    assert isinstance(built, AnthropicProvider)
    await built.start()
    yield built
    await built.close()


async def _read(reply: UpstreamReply) -> bytes:
    if reply.chunks is None:
        return reply.body
    try:
        return b"".join([chunk async for chunk in reply.chunks])
    finally:
        await reply.close()


async def test_a_plain_request_is_relayed_as_bytes_with_the_provider_key(
    fake: tuple[AnthropicUpstream, str], provider: AnthropicProvider
) -> None:
    reply = await provider.send(ProviderRequest("messages", BODY, headers=CLIENT_HEADERS, query="beta=true"))
    assert reply.status == 200, reply.body
    assert orjson.loads(reply.body)["content"] == [{"type": "text", "text": "echo: hi"}]
    sent = fake[0].messages()[0]
    assert sent.body == BODY and sent.query == {"beta": "true"}
    assert sent.headers["x-api-key"] == KEY and "authorization" not in sent.headers
    assert sent.headers["anthropic-beta"] == BETA and sent.headers["anthropic-version"] == "2023-06-01"
    assert GATEWAY_KEY not in str(sent.headers)
    assert not any(h.startswith("x-stainless") or h.startswith("x-claude-code") for h in sent.headers)


async def test_the_answer_headers_are_an_allow_list(provider: AnthropicProvider) -> None:
    reply = await provider.send(ProviderRequest("messages", BODY, headers=CLIENT_HEADERS))
    assert reply.headers["request-id"].startswith("req_")
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "3999"
    assert reply.headers["content-type"].startswith("application/json")
    assert "anthropic-organization-id" not in reply.headers


async def test_a_stream_is_relayed_untouched(
    fake: tuple[AnthropicUpstream, str], provider: AnthropicProvider
) -> None:
    body = BODY.replace(b'"max_tokens": 64', b'"max_tokens": 64, "stream": true')
    reply = await provider.send(ProviderRequest("messages", body, stream=True, headers=CLIENT_HEADERS))
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    raw = await _read(reply)
    frames = raw.decode().split("\n\n")
    events = [frame.split("\n", 1)[0] for frame in frames if frame]
    assert events[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert events[-2:] == ["event: message_delta", "event: message_stop"]
    text = "".join(
        orjson.loads(frame.split("data: ", 1)[1])["delta"].get("text", "")
        for frame in frames
        if frame.startswith("event: content_block_delta")
    )
    assert text == "echo: hi" and fake[0].messages()[0].body == body


async def test_the_default_version_is_sent_when_the_client_sends_none(
    fake: tuple[AnthropicUpstream, str], provider: AnthropicProvider
) -> None:
    reply = await provider.send(ProviderRequest("messages", BODY))
    assert reply.status == 200, reply.body
    assert fake[0].messages()[0].headers["anthropic-version"] == provider.config.anthropic_version


async def test_count_tokens_goes_to_its_path(provider: AnthropicProvider) -> None:
    body = b'{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}'
    reply = await provider.send(ProviderRequest("messages/count_tokens", body, headers=CLIENT_HEADERS))
    assert reply.status == 200 and orjson.loads(reply.body)["input_tokens"] > 0


@pytest.mark.parametrize(("status", "kind"), [(529, "overloaded_error"), (429, "rate_limit_error")])
async def test_provider_errors_come_back_as_replies(
    fake: tuple[AnthropicUpstream, str], provider: AnthropicProvider, status: int, kind: str
) -> None:
    fake[0].fail_next(status, retry_after=3)
    reply = await provider.send(ProviderRequest("messages", BODY, stream=True, headers=CLIENT_HEADERS))
    raw = await _read(reply)
    assert reply.status == status and reply.headers["retry-after"] == "3"
    assert orjson.loads(raw)["error"]["type"] == kind and reply.headers["request-id"]


async def test_a_wrong_key_is_a_401_reply(fake: tuple[AnthropicUpstream, str]) -> None:
    config = ProviderConfig.model_validate(
        {"type": "anthropic", "base_url": fake[1], "api_key": "sk-ant-wrong"}
    )
    wrong = build_provider("claude", config)
    await wrong.start()
    try:
        reply = await wrong.send(ProviderRequest("messages", BODY, headers=CLIENT_HEADERS))
    finally:
        await wrong.close()
    assert reply.status == 401 and orjson.loads(reply.body)["error"]["type"] == "authentication_error"


def test_the_type_has_its_own_defaults_and_secrets() -> None:
    config = ProviderConfig.model_validate(
        {"type": "anthropic", "api_key": KEY, "headers": {"x-api-key": "other"}}
    )
    assert config.base_url == "https://api.anthropic.com" and config.anthropic_version == "2023-06-01"
    assert set(build_provider("claude", config).secrets) == {KEY, "other"}
