"""Check a request body before any stage uses it, so bad input gets a 400 that names the field.

This module parses the body and holds the checks every protocol shares; each protocol adapter
(``gateway/protocols``) checks only what the gateway relies on for it (model, messages/prompt/input,
stream, n, max tokens): every other field is relayed untouched so new provider parameters keep working.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.errors import InvalidRequest

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


def check_model(body: dict[str, Any]) -> None:
    """Every protocol names its model: a non-empty string without control characters."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise field_error(
            "model", "you must provide a model name (a non-empty string)", missing="model" not in body
        )
    if _CONTROL.search(model):
        raise field_error("model", "a model name cannot contain control characters")


def optional(body: dict[str, Any], name: str, kind: type, described: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], kind):
        raise field_error(name, f"must be {described}")


def check_messages(body: dict[str, Any]) -> None:
    """``messages``: a non-empty array of objects with a string ``role`` (chat and Anthropic's Messages)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise field_error(
            "messages", "must be a non-empty array of message objects", missing="messages" not in body
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise field_error(f"messages[{i}]", "must be an object with a string 'role'")


def integer(value: Any) -> int | None:
    """``value`` as an int when JSON Schema counts it an integer, else None.

    JSON Schema compares numbers by value: ``2.0`` is an integer, and integers have no width. The JSON
    parser reads an integer beyond 64 bits as a float, which is whole, so it counts as well."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def integer_field(body: dict[str, Any], name: str, minimum: int | None = None) -> None:
    """An optional integer field, at least ``minimum`` when the spec sets one; the provider judges the
    rest (a model's own limits)."""
    value = body.get(name)
    if value is None:
        return
    number = integer(value)
    if number is None:
        raise field_error(name, "must be an integer")
    if minimum is not None and number < minimum:
        raise field_error(name, f"must be an integer of at least {minimum}")


def field_error(name: str, problem: str, missing: bool = False) -> InvalidRequest:
    if missing:
        return InvalidRequest(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return InvalidRequest(f"Invalid '{name}': {problem}.", param=name, code="invalid_value")
