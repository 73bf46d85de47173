"""The protocol adapters: one contract, and a new protocol needs only its module and one registry line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.errors import GatewayError
from gateway.protocols import CHAT, COMPLETIONS, EMBEDDINGS, PROTOCOLS, Usage
from gateway.protocols.base import Body
from gateway.protocols.chat import Chat
from gateway.sse import UsageWatcher
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


class Messages(Chat):
    """A stand-in for a later protocol: chat's shapes behind its own route and Anthropic's error shape."""

    name = "messages.test"
    route = "/v1/messages-test"

    def error_body(self, error: GatewayError) -> Body:
        return {"type": "error", "error": {"type": error.type, "message": error.message}}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Messages:
    adapter = Messages()
    monkeypatch.setitem(PROTOCOLS, adapter.route, adapter)
    return adapter


def test_a_registered_protocol_is_served_with_its_own_error_shape(
    registered: Messages, fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    url = start_gateway(base_policy(fake_upstream.url))
    bad = httpx.post(f"{url}{registered.route}", json={"model": "gpt-4o-mini"}, headers=AUTH)
    assert bad.status_code == 400
    assert bad.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Missing required parameter: 'messages'."},
    }
    unauthorised = httpx.post(f"{url}{registered.route}", json={})
    assert unauthorised.status_code == 401 and unauthorised.json()["type"] == "error"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    good = httpx.post(f"{url}{registered.route}", json=body, headers=AUTH)
    assert good.status_code == 200 and good.json()["choices"][0]["message"]["content"]
    other = httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers=AUTH)
    assert set(other.json()["error"]) == {"message", "type", "param", "code"}, "OpenAI's shape elsewhere"


def test_usage_reads_prompt_cache_and_reasoning_details() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert CHAT.usage({"usage": usage}) == Usage(100, 40, cached_input_tokens=64, reasoning_tokens=30)
    assert CHAT.usage({"usage": {"prompt_tokens": 3}}) == Usage(3, 0)
    assert CHAT.usage({"choices": []}) is None
    assert EMBEDDINGS.usage({"usage": {"prompt_tokens": 5, "total_tokens": 5}}) == Usage(5, 0)


def test_a_stream_asks_for_usage_only_when_the_client_did_not() -> None:
    body: dict[str, Any] = {"model": "m", "messages": [], "stream": True}
    asked = CHAT.stream_request(body)
    assert asked is not None and asked["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body, "the client's body is not changed"
    assert CHAT.stream_request({**body, "stream_options": {"include_usage": True}}) is None
    assert EMBEDDINGS.stream_request({"model": "m", "input": "x"}) is None


def test_stream_usage_with_details_is_read_by_the_watcher() -> None:
    watcher = UsageWatcher(COMPLETIONS, client_wants_usage=False)
    assert watcher.keep(orjson.dumps({"choices": [{"index": 0, "text": "hi"}]}))
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 8}}
    assert not watcher.keep(orjson.dumps({"choices": [], "usage": usage}))
    assert watcher.keep(b"[DONE]") and watcher.finished
    assert watcher.usage_or_count(1) == Usage(9, 2, cached_input_tokens=8)


def test_answer_fields_leave_out_what_cannot_change_the_answer() -> None:
    body = {"model": "m", "messages": [1], "stream": True, "user": "u", "temperature": 0}
    assert CHAT.answer_fields(body) == {"messages": [1], "temperature": 0}


def test_only_plain_chat_requests_are_batchable() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "fix it"}]}
    assert CHAT.batch_task(False, body) == "fix it"
    assert CHAT.batch_task(True, body) is None
    assert CHAT.batch_task(False, {**body, "tools": [{"type": "function"}]}) is None
    assert COMPLETIONS.batch_task(False, {"model": "m", "prompt": "fix it"}) is None
