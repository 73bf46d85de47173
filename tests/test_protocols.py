"""The protocol adapters: one contract, and a new protocol needs only its module and one registry line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.errors import GatewayError, InvalidRequest
from gateway.protocols import CHAT, COMPLETIONS, EMBEDDINGS, PROTOCOLS, Protocol, Usage
from gateway.protocols.base import Body
from gateway.protocols.chat import Chat
from gateway.sse import UsageWatcher
from gateway.tokens import max_output
from gateway.validation import integer, parse_json
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


CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
BIG = orjson.loads(b"1180591620717411303424")  # 2**70: read as a whole float, as the gateway parses it
ACCEPTED = [
    (CHAT, {**CHAT_BODY, "max_tokens": 0}),
    (CHAT, {**CHAT_BODY, "max_tokens": -5}),
    (CHAT, {**CHAT_BODY, "max_completion_tokens": 0}),
    (CHAT, {**CHAT_BODY, "max_tokens": 1114112.0, "n": 2.0}),
    (CHAT, {**CHAT_BODY, "max_completion_tokens": BIG}),
    (COMPLETIONS, {"model": "m", "prompt": None}),
    (COMPLETIONS, {"model": "m", "prompt": []}),
    (COMPLETIONS, {"model": "m", "prompt": "hi", "max_tokens": 0, "echo": True, "logprobs": 0}),
    (COMPLETIONS, {"model": "m", "prompt": [1, 2], "max_tokens": 16.0}),
]
REFUSED = [
    (CHAT, {**CHAT_BODY, "max_tokens": 2.5}, "max_tokens"),
    (CHAT, {**CHAT_BODY, "max_tokens": "16"}, "max_tokens"),
    (CHAT, {**CHAT_BODY, "max_completion_tokens": True}, "max_completion_tokens"),
    (CHAT, {**CHAT_BODY, "n": 0}, "n"),
    (COMPLETIONS, {"model": "m"}, "prompt"),
    (COMPLETIONS, {"model": "m", "prompt": 5}, "prompt"),
    (COMPLETIONS, {"model": "m", "prompt": "hi", "max_tokens": -1}, "max_tokens"),
]


@pytest.mark.parametrize(("protocol", "body"), ACCEPTED)
def test_validation_accepts_what_the_spec_allows(protocol: Protocol, body: Body) -> None:
    protocol.validate(body)
    assert protocol.estimate(body) >= 1


@pytest.mark.parametrize(("protocol", "body", "param"), REFUSED)
def test_validation_still_refuses_what_the_spec_refuses(protocol: Protocol, body: Body, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        protocol.validate(body)
    assert refused.value.param == param


def test_a_json_schema_integer_is_read_as_one() -> None:
    assert [integer(v) for v in (2, 2.0, BIG, -3.0)] == [2, 2, 2**70, -3]
    assert [integer(v) for v in (2.5, True, "2", None, float("inf"))] == [None] * 5


def test_the_output_reservation_is_never_negative() -> None:
    assert max_output({"max_tokens": 0}, 512) == 0
    assert max_output({"max_completion_tokens": -7, "max_tokens": 100}, 512) == 0
    assert max_output({"max_tokens": 16.0, "n": 2.0}, 512) == 32
    assert max_output({"max_tokens": 16, "n": 0}, 512) == 16
    assert max_output({"max_tokens": 2.5}, 512) == 512


def test_an_output_limit_a_batch_cannot_add_up_is_sent_alone() -> None:
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "fix it"}]}
    assert CHAT.batch_task(False, {**body, "max_tokens": 8, "n": 1.0}) == "fix it"
    for limit in (0, -1, 8.0):
        assert CHAT.batch_task(False, {**body, "max_tokens": limit}) is None


def test_numbers_the_parser_can_read_are_kept_and_the_rest_is_invalid_json() -> None:
    body = parse_json(b'{"max_tokens": 1180591620717411303424, "n": 2.0}')
    assert (integer(body["max_tokens"]), integer(body["n"])) == (2**70, 2)
    with pytest.raises(InvalidRequest) as refused:
        parse_json(b'{"max_tokens": 1e400}')
    assert refused.value.code == "invalid_json"
