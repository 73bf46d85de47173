"""An Anthropic model through a ``type: litellm`` provider, against a fake Anthropic Messages API: it works
without internet egress, goes to the Anthropic API (never OpenAI's) when no ``base_url`` is given, and a
failure keeps the provider's status and ``Retry-After`` and names its cause without the provider key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.policy.core import DEFAULT_BASE_URLS, ProviderConfig
from tests.conftest import GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.anthropic_bodies import input_tokens
from tests.fakes.redis_server import free_port
from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic

MESSAGES = [{"role": "user", "content": "hello claude"}]
CLAUDE = "claude-3-5-sonnet-20241022"


@dataclass
class Served:
    fake: AnthropicUpstream
    url: str


@pytest.fixture
def anthropic() -> Iterator[Served]:
    with serve_anthropic(PROVIDER_KEY) as (fake, url):
        yield Served(fake, url)


def claude_policy(base_url: str | None) -> dict[str, Any]:
    policy = base_policy(f"http://127.0.0.1:{free_port()}")  # the OpenAI provider is never called here
    provider: dict[str, Any] = {
        "type": "litellm",
        "litellm_prefix": "anthropic/",
        "api_key": PROVIDER_KEY,
        "retry": {"attempts": 1},
    }
    if base_url is not None:
        provider["base_url"] = base_url
    policy["providers"]["claude"] = provider
    policy["models"]["claude"] = {"provider": "claude", "upstream_model": CLAUDE}
    return policy


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


def test_an_anthropic_call_needs_no_internet(
    anthropic: Served,
    serve: Callable[..., tuple[Any, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No egress, even on a machine that has it: every non-loopback request goes to a dead proxy, and no
    # tokenizer cache from an earlier run is around.
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "LITELLM_LOCAL_MODEL_COST_MAP"):
        monkeypatch.delenv(name, raising=False)
    policy = tmp_path / "claude.yaml"
    policy.write_text(yaml.safe_dump(claude_policy(anthropic.url)))
    _, url = serve(policy)
    with sdk(url) as client:
        answer = client.chat.completions.create(model="claude", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="claude", messages=MESSAGES, stream=True))
    assert answer.choices[0].message.content == "echo: hello claude"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == input_tokens(anthropic.fake.messages()[0].json) > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello claude"
    assert [r.json["model"] for r in anthropic.fake.messages()] == [CLAUDE, CLAUDE]


def test_without_base_url_litellm_uses_the_models_own_api(
    anthropic: Served, start_gateway: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm's default for Anthropic (overridable by ANTHROPIC_API_BASE), not the OpenAI URL.
    monkeypatch.setenv("ANTHROPIC_API_BASE", anthropic.url)
    with sdk(start_gateway(claude_policy(None))) as client:
        answer = client.chat.completions.create(model="claude", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo: hello claude"
    assert len(anthropic.fake.messages()) == 1
    assert ProviderConfig.model_validate({"type": "litellm"}).base_url == ""
    assert ProviderConfig.model_validate({}).base_url == DEFAULT_BASE_URLS["openai"]


def test_a_rate_limit_keeps_status_and_retry_after_and_names_the_cause(
    anthropic: Served, start_gateway: Callable[..., str]
) -> None:
    anthropic.fake.fail_next(429, retry_after=7, message="slow down")
    url = start_gateway(claude_policy(anthropic.url))
    with sdk(url) as client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="claude", messages=MESSAGES)
    assert info.value.response.headers["Retry-After"] == "7"
    message = info.value.response.json()["error"]["message"]
    assert "RateLimitError" in message and "slow down" in message
    assert PROVIDER_KEY not in info.value.response.text


def test_a_relayed_client_error_names_its_cause_without_the_key(
    anthropic: Served, start_gateway: Callable[..., str]
) -> None:
    anthropic.fake.fail_next(400, message=f"prompt too long for key {PROVIDER_KEY}")
    url = start_gateway(claude_policy(anthropic.url))
    with sdk(url) as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=MESSAGES)
    message = info.value.response.json()["error"]["message"]
    assert "BadRequestError: " in message and "prompt too long for key [redacted]" in message, message
    assert PROVIDER_KEY not in info.value.response.text


def test_a_connection_failure_names_its_cause_without_the_key(start_gateway: Callable[..., str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    url = start_gateway(claude_policy(f"http://{dead}"))
    with sdk(url) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="claude", messages=MESSAGES)
    assert info.value.status_code == 502
    message = info.value.response.json()["error"]["message"]
    assert "InternalServerError: " in message and f"Cannot connect to host {dead}" in message, message
    assert PROVIDER_KEY not in info.value.response.text
