"""``POST /v1/messages`` through the gateway with the official ``anthropic`` SDK, against the strict fake
Anthropic API: identified, relayed as bytes with the client's betas and query string, the provider key
in ``x-api-key`` and the client's never forwarded, routed among Claude tiers, and metered."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest
from anthropic.types import MessageParam, TextBlockParam

from tests.conftest import GATEWAY_KEY
from tests.fakes.upstream_anthropic import AnthropicUpstream
from tests.messages_helpers import ANTHROPIC_KEY, fake_anthropic, messages_gateway, sdk

__all__ = ["fake_anthropic", "messages_gateway"]

BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
USER: list[MessageParam] = [{"role": "user", "content": "hello there"}]


def test_a_plain_message_is_relayed_with_the_clients_betas_and_the_provider_key(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    answer = sdk(url).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=USER,
        extra_headers={
            "anthropic-beta": BETA,
            "anthropic-version": "2026-10-21",
            "x-claude-code-session-id": "s-1",
        },
        extra_query={"beta": "true"},
        metadata={"user_id": "session-1"},
    )
    assert answer.content[0].type == "text" and answer.content[0].text == "echo: hello there"
    sent = fake_anthropic.messages()[0]
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in sent.headers
    assert sent.headers["anthropic-beta"] == BETA and sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.query == {"beta": "true"}
    assert GATEWAY_KEY not in str(sent.headers) and "x-claude-code-session-id" not in sent.headers
    assert sent.json["metadata"] == {"user_id": "session-1"}


def test_the_gateway_key_is_accepted_as_bearer(messages_gateway: Callable[..., str]) -> None:
    url = messages_gateway()
    reply = httpx.post(
        f"{url}/v1/messages",
        headers={"Authorization": f"Bearer {GATEWAY_KEY}", "anthropic-version": "2023-06-01"},
        json={"model": "claude-haiku-4-5", "max_tokens": 16, "messages": USER},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Gateway-Model"] == "claude-haiku-4-5"
    assert reply.json()["usage"]["input_tokens"] > 0


def test_the_body_is_relayed_as_bytes(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    raw = b'{"model":"claude-haiku-4-5",  "max_tokens": 16,\n"messages":[{"role":"user","content":"hi"}]}'
    headers = {
        "x-api-key": GATEWAY_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    reply = httpx.post(f"{url}/v1/messages", headers=headers, content=raw)
    assert reply.status_code == 200, reply.text
    assert fake_anthropic.messages()[0].body == raw


def test_an_alias_routes_among_claude_tiers(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    routing = {
        "aliases": ["auto"],
        "candidates": ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-5-5"],
        "rules": [{"name": "tests", "when": {"task_types": ["test"]}, "use": {"tier": "large"}}],
    }
    url = messages_gateway(routing=routing)
    client = sdk(url)
    plain = client.messages.with_raw_response.create(model="auto", max_tokens=16, messages=USER)
    assert plain.headers["X-Gateway-Model"] == "claude-haiku-4-5"
    large = client.messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=USER, extra_headers={"X-Task-Type": "test"}
    )
    assert large.headers["X-Gateway-Model"] == "claude-opus-5-5"
    assert [m.json["model"] for m in fake_anthropic.messages()] == ["claude-haiku-4-5", "claude-opus-5-5"]


def test_a_model_of_an_openai_provider_is_an_anthropic_shaped_400(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    import anthropic

    url = messages_gateway()
    with pytest.raises(anthropic.BadRequestError) as raised:
        sdk(url).messages.create(model="gpt-4o-mini", max_tokens=16, messages=USER)
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": raised.value.body["error"]["message"]},  # type: ignore[index]
    }
    assert "openai" in str(raised.value) and not fake_anthropic.messages()


def test_an_unknown_model_goes_to_the_anthropic_provider_when_only_the_wildcard_names_it(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(extra_models={"*": {"provider": "openai"}})
    answer = sdk(url).messages.create(model="claude-3-7-sonnet-latest", max_tokens=16, messages=USER)
    assert answer.model == "claude-3-7-sonnet-latest"
    assert fake_anthropic.messages()[0].json["model"] == "claude-3-7-sonnet-latest"


def test_head_and_get_of_the_root_answer_200(messages_gateway: Callable[..., str]) -> None:
    url = messages_gateway()
    assert httpx.head(url + "/").status_code == 200
    reply = httpx.get(url + "/")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}


def test_usage_counts_prompt_cache_reads_and_writes(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    before = _tokens_used(url, "claude-sonnet-4-5")
    system: list[TextBlockParam] = [
        {"type": "text", "text": "You are a careful engineer. " * 400, "cache_control": {"type": "ephemeral"}}
    ]
    client = sdk(url)
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=16, system=system, messages=USER)
    second = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=16,
        system=system,
        messages=[{"role": "user", "content": "again"}],
    )
    assert first.usage.cache_creation_input_tokens and second.usage.cache_read_input_tokens
    used = _tokens_used(url, "claude-sonnet-4-5") - before
    expected = sum(
        u.input_tokens
        + (u.cache_creation_input_tokens or 0)
        + (u.cache_read_input_tokens or 0)
        + u.output_tokens
        for u in (first.usage, second.usage)
    )
    assert used == expected
    assert orjson.loads(fake_anthropic.messages()[0].body)["system"] == system


def _tokens_used(url: str, model: str) -> float:
    """``tokens_used_total`` for ``model`` (the registry is the process's: read it before and after)."""
    lines = httpx.get(url + "/metrics").text.splitlines()
    prefix = "tokens_used_total{"
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(prefix) and f'"{model}"' in x)
