"""Pure builders of OpenAI-shaped bodies for the fake upstream.

Kept free of HTTP so the plain handlers, the SSE streams and the batch runner all answer a request
identically, and so tests can compute the exact answer (text, tokens, vectors) they should expect.
"""

from __future__ import annotations

import base64
import math
import random
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

FINGERPRINT = "fp_fake0001"
EMBEDDING_DIMENSIONS = 8
MAX_INPUTS = 2048  # inputs in one embeddings request (the spec's maxItems, as the API enforces it)
MAX_DIMENSIONS = 3072  # text-embedding-3-large's; the spec sets no maximum, the API has one
MESSAGE_OVERHEAD_TOKENS = 4

Responder = Callable[[dict[str, Any]], str]


class ApiError(Exception):
    """An error the real API would answer with; rendered as ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = error_body(message, type_, param, code)
        self.headers = headers or {}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: one token per 4 characters, rounded up."""
    return -(-len(text) // 4)


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or the joined ``text`` of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens the fake bills for ``messages``: ``count_tokens(text) + 4`` per message."""
    return sum(count_tokens(text_of(m.get("content"))) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def require(body: Any, name: str) -> Any:
    """Return ``body[name]`` or raise the real API's missing-parameter error."""
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The OpenAI API expects a "
            "JSON payload, but what was sent was not valid JSON.",
        )
    if body.get(name) is None:
        if name == "model":
            raise ApiError(400, "you must provide a model parameter")
        raise ApiError(
            400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return body[name]


def integer(
    body: dict[str, Any], name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``body[name]`` as the integer JSON Schema means (``2.0`` is one), within the spec's bounds, or the
    real API's 400; ``default`` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not _is_tokens(value):
        raise ApiError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ApiError(
            400,
            f"Invalid '{name}': integer out of range.",
            param=name,
            code="integer_below_min_value"
            if minimum is not None and value < minimum
            else "integer_above_max_value",
        )
    return int(value)


def _limit(body: dict[str, Any], *names: str, minimum: int | None = None) -> int | None:
    """The first of ``names`` that is set: an output-token limit (the spec sets no minimum for chat)."""
    for name in names:
        if body.get(name) is not None:
            return integer(body, name, 0, minimum)
    return None


def _truncate(text: str, limit: int | None) -> tuple[str, str]:
    """Cut ``text`` to ``limit`` tokens like ``max_tokens`` does: (text, finish_reason)."""
    if limit is not None and count_tokens(text) > limit:
        return text[: max(limit, 0) * 4], "length"
    return text, "stop"


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(slots=True)
class ChatAnswer:
    """What the fake will answer to one chat request, shared by the JSON and SSE renderings."""

    model: str
    n: int
    content: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int  # per choice
    tool_name: str | None = None
    tool_arguments: str = ""
    tool_id: str = ""
    id: str = field(default_factory=lambda: new_id("chatcmpl-"))
    created: int = field(default_factory=lambda: int(time.time()))
    cached_tokens: int = 0  # prompt tokens the provider's prefix cache served (see provider_model)

    @property
    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens * self.n, self.cached_tokens)


def plan_chat(body: Any, responder: Responder | None = None) -> ChatAnswer:
    """Validate a chat request like the real API and decide the deterministic answer."""
    model = require(body, "model")
    messages = require(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
            "got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    if not all(isinstance(m, dict) for m in messages):
        raise ApiError(
            400,
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    n = integer(body, "n", 1, 1, 128)
    user = last_user_text(messages)
    prompt = prompt_tokens(messages)
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools and choice != "none":
        name = _function_name(choice) or _function_name(tools[0]) or "tool"
        arguments = orjson.dumps({"echo": user}).decode()
        return ChatAnswer(
            model,
            n,
            None,
            "tool_calls",
            prompt,
            count_tokens(name + arguments),
            tool_name=name,
            tool_arguments=arguments,
            tool_id=new_id("call_"),
        )
    text = responder(body) if responder is not None else "echo: " + user
    text, finish = _truncate(text, _limit(body, "max_completion_tokens", "max_tokens"))
    return ChatAnswer(model, n, text, finish, prompt, count_tokens(text))


def _function_name(spec: Any) -> str | None:
    """The function a ``tools`` entry or a ``tool_choice`` names, if it names one."""
    function = spec.get("function") if isinstance(spec, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name else None


def chat_completion(answer: ChatAnswer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": answer.tool_id,
                "type": "function",
                "function": {"name": answer.tool_name, "arguments": answer.tool_arguments},
            }
        ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
            for i in range(answer.n)
        ],
        "usage": answer.usage,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


@dataclass(slots=True)
class CompletionAnswer:
    """A legacy completions answer: ``choices`` are (text, finish_reason), ``n`` per prompt, in order."""

    model: str
    choices: list[tuple[str, str]]
    prompt_tokens: int
    id: str = field(default_factory=lambda: new_id("cmpl-"))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, sum(count_tokens(text) for text, _ in self.choices))


def plan_completion(body: Any) -> CompletionAnswer:
    model = require(body, "model")
    prompt = body.get("prompt")
    if prompt is None or prompt == []:
        prompt = "<|endoftext|>"  # the spec's default
    is_tokens = isinstance(prompt, list) and all(_is_tokens(t) for t in prompt)
    prompts = [prompt] if isinstance(prompt, str) or is_tokens else prompt
    if not isinstance(prompts, list) or not all(isinstance(p, str) or _is_input(p) for p in prompts):
        raise ApiError(
            400, "Invalid 'prompt': expected a string or an array of strings or tokens.", param="prompt"
        )
    n = integer(body, "n", 1, 1, 128)
    limit = _limit(body, "max_tokens", minimum=0)
    choices, tokens = [], 0
    for item in prompts:
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count_tokens(item) if isinstance(item, str) else len(item)
        choices += [_truncate("echo: " + text, limit)] * n
    return CompletionAnswer(model, choices, tokens)


def completion(answer: CompletionAnswer) -> dict[str, Any]:
    return {
        "id": answer.id,
        "object": "text_completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [
            {"text": text, "index": i, "logprobs": None, "finish_reason": finish}
            for i, (text, finish) in enumerate(answer.choices)
        ],
        "usage": answer.usage,
        "system_fingerprint": FINGERPRINT,
    }


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector derived from ``text`` only, rounded to float32 so base64 and float answers agree."""
    rng = random.Random(text)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in vector))))


def _is_tokens(value: Any) -> bool:
    """A token id: an integer, whole floats included (orjson reads integers beyond 64 bits as floats)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


def _is_input(item: Any) -> bool:
    """One embeddings input: a non-empty string or a non-empty array of token ids."""
    if isinstance(item, str):
        return bool(item)
    return isinstance(item, list) and bool(item) and all(_is_tokens(t) for t in item)


def embeddings(body: Any) -> dict[str, Any]:
    model = require(body, "model")
    raw = require(body, "input")
    single = isinstance(raw, str) or (isinstance(raw, list) and bool(raw) and _is_tokens(raw[0]))
    inputs = [raw] if single else raw
    if not isinstance(inputs, list) or not 0 < len(inputs) <= MAX_INPUTS or not all(map(_is_input, inputs)):
        raise ApiError(
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
        )
    dimensions = integer(body, "dimensions", EMBEDDING_DIMENSIONS, 1, MAX_DIMENSIONS)
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count_tokens(item) if isinstance(item, str) else len(item)
        vector: Any = fake_embedding(text, dimensions)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
