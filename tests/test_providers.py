"""Providers: litellm reaches non-OpenAI-compatible APIs, and is imported only when the policy asks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai

from tests.conftest import GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.startup_imports import DEFAULT_POLICY, imported

MESSAGES = [{"role": "user", "content": "through litellm"}]


def litellm_policy(fake: FakeUpstream) -> dict[str, object]:
    policy = base_policy(fake.url)  # type: ignore[attr-defined]
    policy["providers"]["ll"] = {
        "type": "litellm",
        "litellm_prefix": "openai/",  # litellm's OpenAI route, pointed at the fake provider
        "base_url": fake.url + "/v1",  # type: ignore[attr-defined]
        "api_key": PROVIDER_KEY,
        "retry": {"attempts": 1},
    }
    policy["models"]["via-litellm"] = {"provider": "ll", "upstream_model": "gpt-4o-mini"}
    return policy


def test_litellm_provider_plain_and_stream(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(litellm_policy(fake_upstream))
    with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="via-litellm", messages=MESSAGES)
        answer = raw.parse()
        chunks = list(client.chat.completions.create(model="via-litellm", messages=MESSAGES, stream=True))
    assert answer.choices[0].message.content == "echo: through litellm"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    assert raw.headers["X-Gateway-Model"] == "via-litellm"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: through litellm"
    seen = fake_upstream.requests[0]
    assert seen.json["model"] == "gpt-4o-mini"
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_litellm_provider_error_is_openai_shaped(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(litellm_policy(fake_upstream))
    fake_upstream.fail_next(times=5, status=500)
    with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
        try:
            client.chat.completions.create(model="via-litellm", messages=MESSAGES)
        except openai.InternalServerError as exc:
            assert exc.status_code == 502
            assert PROVIDER_KEY not in exc.response.text
        else:
            raise AssertionError("a failing provider must surface as an error")


def test_litellm_is_not_imported_for_openai_compatible_providers(tmp_path: Path) -> None:
    assert imported(DEFAULT_POLICY, ["litellm"], tmp_path) == []
