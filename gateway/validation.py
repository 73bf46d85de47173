"""Check a request body before any stage uses it, so bad input gets a 400 that names the field.

Only what the gateway relies on is checked (model, messages/prompt/input, stream, n, max tokens);
every other field is relayed untouched so new OpenAI parameters keep working.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.errors import InvalidRequest

CHAT = "chat.completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
MAX_DEPTH = 128
"""Deepest nesting of arrays and objects a body may have: far beyond any real request (a tool's JSON
schema is a few dozen levels), well inside what the stages after parsing can serialise or walk."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying why not."""
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if not _fits(body, MAX_DEPTH):
        raise InvalidRequest(
            f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep.",
            code="invalid_json",
        )
    return body


def _fits(node: dict[str, Any] | list[Any], room: int) -> bool:
    """Whether ``node`` and what it contains span at most ``room`` levels (the recursion stops there)."""
    for child in node.values() if type(node) is dict else node:
        if (type(child) is dict or type(child) is list) and (room == 1 or not _fits(child, room - 1)):
            return False
    return True


def validate(endpoint: str, body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _field(
            "model", "you must provide a model name (a non-empty string)", missing="model" not in body
        )
    if _CONTROL.search(model):
        raise _field("model", "a model name cannot contain control characters")
    _optional(body, "stream", bool, "a boolean")
    if endpoint == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _field(
                "messages", "must be a non-empty array of message objects", missing="messages" not in body
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _field(f"messages[{i}]", "must be an object with a string 'role'")
        _positive_int(body, "max_tokens")
        _positive_int(body, "max_completion_tokens")
        _positive_int(body, "n")
        _optional(body, "stream_options", dict, "an object")
    elif endpoint == COMPLETIONS:
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
            raise _field("prompt", "must be a string or a non-empty array", missing="prompt" not in body)
        _positive_int(body, "max_tokens")
        _positive_int(body, "n")
    elif endpoint == EMBEDDINGS:
        data = body.get("input")
        if not isinstance(data, (str, list)) or not data:
            raise _field("input", "must be a non-empty string or array", missing="input" not in body)
        if body.get("stream"):
            raise _field("stream", "embeddings are not streamed; omit it or set it to false")


def _optional(body: dict[str, Any], name: str, kind: type, described: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], kind):
        raise _field(name, f"must be {described}")


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _field(name, "must be a positive integer")


def _field(name: str, problem: str, missing: bool = False) -> InvalidRequest:
    if missing:
        return InvalidRequest(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return InvalidRequest(f"Invalid '{name}': {problem}.", param=name, code="invalid_value")
