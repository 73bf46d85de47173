"""Pure builders of the fake provider's Responses API objects: the answer, its usage and its SSE events.

The answer is deterministic like the rest of the fake (``"echo: " + <last input text>``), shaped by the
request the way the real API shapes it: a function tool gives a ``function_call`` item, ``text.format``
``json_schema`` gives JSON text with the schema's required properties, ``reasoning`` (or a reasoning
model) gives a ``reasoning`` item first. Input tokens are counted on a rendering of the whole prompt
(instructions, tools, items) so that a repeated prefix can be billed as cached, like OpenAI's caching.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .upstream_bodies import MESSAGE_OVERHEAD_TOKENS, ApiError, count_tokens, new_id, text_of
from .upstream_sse import split_words

REASONING_TOKENS = 16  # what the fake "thinks" per answer on a reasoning model
CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least 1,024 tokens...
CACHE_STEP_TOKENS = 128  # ...in steps of 128 tokens
_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5", "codex")
_MARK = "<|item|>" * (MESSAGE_OVERHEAD_TOKENS // 2)  # 4 characters a token: the per-item overhead


def item_text(item: dict[str, Any]) -> str:
    """The text an input or output item contributes to the prompt."""
    for name in ("content", "output"):
        value = item.get(name)
        if value is not None:
            return text_of(value)
    if item.get("type") == "function_call":
        return f"{item.get('name')}({item.get('arguments')})"
    return str(item.get("encrypted_content") or item.get("input") or "")


def _segment(text: str) -> str:
    """``text`` padded to whole tokens plus the item marker, so ``len // 4`` is its token count."""
    return text + " " * (-len(text) % 4) + _MARK


def render(body: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The prompt as the fake tokenizes it: instructions, tools, then every item; stable across calls."""
    head = [str(body.get("instructions") or "")]
    if body.get("tools"):
        head.append(orjson.dumps(body["tools"], option=orjson.OPT_SORT_KEYS).decode())
    return "".join(_segment(t) for t in head if t) + "".join(_segment(item_text(i)) for i in items)


def cached_tokens(prompt: str, seen: list[str]) -> int:
    """Tokens of ``prompt`` already seen as a prefix: 0 below 1,024, else in steps of 128."""
    shared = (len(os.path.commonprefix([prompt, old])) for old in seen)  # noqa: RUF071 (characters)
    return cacheable(max(shared, default=0) // 4)


def cacheable(tokens: int) -> int:
    """How much of a ``tokens`` long prefix a cache holds: 0 below 1,024, else whole steps of 128."""
    return tokens // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS if tokens >= CACHE_MIN_TOKENS else 0


def example(schema: Any, defs: dict[str, Any], text: str) -> Any:
    """A value matching ``schema``'s type and required properties (``$ref``, ``anyOf``, ``enum`` resolved)."""
    if not isinstance(schema, dict):
        return text
    if "$ref" in schema:
        return example(defs.get(schema["$ref"].rsplit("/", 1)[-1]), defs, text)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            return example(schema[union][0], defs, text)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example(props.get(name), defs, text) for name in schema.get("required") or props}
    if kind == "array":
        return [example(schema.get("items"), defs, text)]
    samples: dict[object, Any] = {"integer": 1, "number": 1.5, "boolean": True, "null": None}
    return samples.get(kind, text)


def _json_of(schema: dict[str, Any], text: str) -> str:
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return orjson.dumps(example(schema, defs, text)).decode()


@dataclass(slots=True)
class Plan:
    """What the fake answers: its output items (complete), usage and status."""

    output: list[dict[str, Any]]
    usage: dict[str, Any]
    status: str = "completed"
    incomplete: dict[str, Any] | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))


def _function_tool(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (items and items[-1].get("type") == "function_call_output"):
        return None
    if isinstance(choice, dict) and choice.get("name"):
        return next((t for t in tools if t.get("name") == choice["name"]), tools[0])
    return tools[0]


def _last_text(items: list[dict[str, Any]]) -> str:
    """The last user text, or the last tool output when the input ends with one."""
    if items and items[-1].get("type") == "function_call_output":
        return item_text(items[-1])
    return next((item_text(i) for i in reversed(items) if i.get("role") == "user"), "")


def plan(body: dict[str, Any], items: list[dict[str, Any]], prompt: str, cached: int) -> Plan:
    """The answer to ``body`` whose whole context (previous turns included) is ``items``."""
    text = "echo: " + _last_text(items)
    output: list[dict[str, Any]] = []
    reasoning = body.get("reasoning") is not None or str(body.get("model")).startswith(_REASONING_MODELS)
    if reasoning:
        item: dict[str, Any] = {"type": "reasoning", "id": new_id("rs_"), "summary": []}
        if "reasoning.encrypted_content" in (body.get("include") or []):
            item["encrypted_content"] = "gAAAAA" + base64.b64encode(secrets.token_bytes(48)).decode()
        output.append(item)
    tool = _function_tool(body, items)
    if tool is not None:
        args = _json_of(tool.get("parameters") or {}, text)
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc_"),
                "call_id": new_id("call_"),
                "name": tool["name"],
                "arguments": args,
                "status": "completed",
            }
        )
    else:
        fmt = (body.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            text = _json_of(fmt.get("schema") or {}, text)
        elif fmt.get("type") == "json_object":
            text = orjson.dumps({"answer": text}).decode()
        status = "completed"
        limit = body.get("max_output_tokens")
        if isinstance(limit, int) and count_tokens(text) > limit:
            text, status = text[: limit * 4], "incomplete"
        output.append(
            {
                "type": "message",
                "id": new_id("msg_"),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    out_text = sum(count_tokens(item_text(i)) for i in output if i["type"] != "reasoning")
    thought = REASONING_TOKENS if reasoning else 0
    in_tokens = len(prompt) // 4
    cached = min(cached, cacheable(in_tokens))
    result = Plan(
        output,
        {
            "input_tokens": in_tokens,
            "input_tokens_details": {
                "cached_tokens": cached,
                "cache_write_tokens": cacheable(in_tokens) - cached,
            },
            "output_tokens": out_text + thought,
            "output_tokens_details": {"reasoning_tokens": thought},
            "total_tokens": in_tokens + out_text + thought,
        },
    )
    if output[-1].get("status") == "incomplete":
        result.status, result.incomplete = "incomplete", {"reason": "max_output_tokens"}
    return result


def response_object(body: dict[str, Any], rid: str, answer: Plan | None, status: str) -> dict[str, Any]:
    """The ``response`` object; ``answer`` None while it is still being made (no output, no usage)."""
    done = answer is not None and status in ("completed", "incomplete")
    tools = body.get("tools") or []
    return {
        "id": rid,
        "object": "response",
        "created_at": answer.created_at if answer else int(time.time()),
        "completed_at": int(time.time()) if done else None,
        "status": status,
        "error": None,
        "incomplete_details": answer.incomplete if done and answer else None,
        "background": bool(body.get("background")),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "metadata": body.get("metadata") or {},
        "output": answer.output if done and answer else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning"),
        "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
        "usage": answer.usage if done and answer else None,
    }


def _started(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as ``response.output_item.added`` shows it: in progress, nothing generated yet."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    if item["type"] == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    return {k: v for k, v in item.items() if k != "encrypted_content"}


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield {"type": "response.output_item.added", "output_index": index, "item": _started(item)}
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "message":
        part = item["content"][0]
        yield {
            "type": "response.content_part.added",
            **where,
            "content_index": 0,
            "part": {**part, "text": ""},
        }
        for piece in split_words(part["text"]):
            yield {
                "type": "response.output_text.delta",
                **where,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
        yield {
            "type": "response.output_text.done",
            **where,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        }
        yield {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
    elif item["type"] == "function_call":
        for piece in split_words(item["arguments"]):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        yield {"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def stream_events(body: dict[str, Any], rid: str, answer: Plan) -> Iterator[dict[str, Any]]:
    """The typed event sequence of a streamed answer, numbered by ``sequence_number`` from 0."""

    def events() -> Iterator[dict[str, Any]]:
        start = response_object(body, rid, answer, "in_progress")
        yield {"type": "response.created", "response": start}
        yield {"type": "response.in_progress", "response": start}
        for index, item in enumerate(answer.output):
            yield from _item_events(index, item)
        final = "response.completed" if answer.status == "completed" else "response.incomplete"
        yield {"type": final, "response": response_object(body, rid, answer, answer.status)}

    for number, event in enumerate(events()):
        yield {**event, "sequence_number": number}


def input_items(raw: Any) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items, each with an id (``msg_``, ``fc_``, …) as stored."""
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
        raise ApiError(
            400,
            "Invalid type for 'input': expected a string or an array of input items.",
            param="input",
            code="invalid_type",
        )
    items = []
    for item in raw:
        kind = item.get("type") or "message"
        prefix = {
            "message": "msg_",
            "function_call": "fc_",
            "function_call_output": "fco_",
            "reasoning": "rs_",
        }.get(kind, "item_")
        content = item.get("content")
        if kind == "message" and isinstance(content, str):
            assistant = item.get("role") == "assistant"
            content = [
                {"type": "output_text", "text": content, "annotations": []}
                if assistant
                else {"type": "input_text", "text": content}
            ]
        stored = {**item, "type": kind, "id": item.get("id") or new_id(prefix)}
        if kind == "message":
            stored.update(content=content, status=item.get("status") or "completed")
        items.append(stored)
    return items
