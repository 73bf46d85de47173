"""Pure builders of Anthropic Messages API bodies for the fake Anthropic upstream.

Validation is as strict as the real API on what a proxy could break (required fields, tool_use/tool_result
pairing, thinking budgets, cache breakpoints, replayed thinking signatures); answers are deterministic so a
test can predict text and token counts. Kept free of HTTP so the plain and the streamed answer agree.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from .upstream_bodies import count_tokens

CACHE_MIN_TOKENS = 1024
"""The smallest prefix the real API caches (Sonnet and Opus; Haiku needs more)."""
MAX_BREAKPOINTS = 4
SYSTEM_TURNS_BETA = "per-turn-control-2026-07-01"
"""The beta that allows ``system`` turns inside ``messages`` (Claude Code sends one when it has it)."""
_SIGNING_KEY = secrets.token_bytes(16)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}


class AnthropicError(Exception):
    """An error the real API would answer with: ``{"type": "error", "error": {"type", "message"}}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = ERROR_TYPES.get(status, "api_error")
        self.headers = headers or {}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def error_body(kind: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


def sign(thinking: str) -> str:
    """The signature of a thinking block; a replayed block with another signature is rejected."""
    return hmac.new(_SIGNING_KEY, thinking.encode(), hashlib.sha256).hexdigest()


def _bad(message: str) -> AnthropicError:
    return AnthropicError(400, message)


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) and "type" in b for b in content):
        raise _bad(f"{where}.content: Input should be a valid list")
    return content


def validate(body: Any, *, count_only: bool = False, betas: frozenset[str] = frozenset()) -> None:
    """Raise the real API's 400 for a body it would reject (``betas``: the request's ``anthropic-beta``)."""
    if not isinstance(body, dict):
        raise _bad("Input should be a valid dictionary")
    required = ("model", "messages") if count_only else ("model", "max_tokens", "messages")
    for name in required:
        if name not in body:
            raise _bad(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise _bad("model: Input should be a valid string")
    if not count_only and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        raise _bad("max_tokens: Input should be greater than or equal to 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream: Input should be a valid boolean")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    roles = ("user", "assistant", "system") if SYSTEM_TURNS_BETA in betas else ("user", "assistant")
    pending: set[Any] = set()  # tool_use ids as sent: any JSON value
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise _bad(f"{where}.role: Input should be {' or '.join(repr(r) for r in roles)}")
        blocks = _blocks(message.get("content"), where)
        results = {b.get("tool_use_id") for b in blocks if b["type"] == "tool_result"}
        if pending and (message["role"] != "user" or not pending <= results):
            raise _bad(
                f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(pending - results))}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        if results - pending:
            raise _bad(
                f"{where}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(sorted(str(r) for r in results - pending))}. Each `tool_result` block must "
                "have a corresponding `tool_use` block in the previous message."
            )
        pending = (
            {b.get("id") for b in blocks if b["type"] == "tool_use"}
            if message["role"] == "assistant"
            else set()
        )
        for j, block in enumerate(blocks):
            if block["type"] == "thinking" and block.get("signature") != sign(str(block.get("thinking", ""))):
                raise _bad(f"{where}.content.{j}: Invalid `signature` in `thinking` block")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled" and not count_only:
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise _bad(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                "#max-tokens-and-context-window-size"
            )
    found = sum(1 for segment in segments(body) if isinstance(segment, dict) and "cache_control" in segment)
    if found > MAX_BREAKPOINTS:
        raise _bad(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )


def segments(body: dict[str, Any]) -> list[Any]:
    """The prompt in cache order (tools, system, messages), one item per tool or content block."""
    system = body.get("system")
    out: list[Any] = list(body.get("tools") or [])
    out.extend(_blocks(system, "system") if system else [])
    for i, message in enumerate(body["messages"]):
        out.append(message["role"])
        out.extend(_blocks(message["content"], f"messages.{i}"))
    return out


def _tokens(segment: Any) -> int:
    if isinstance(segment, dict) and segment.get("type") == "text" and isinstance(segment.get("text"), str):
        return count_tokens(segment["text"])
    if isinstance(segment, str):
        return 1
    return count_tokens(orjson.dumps(_uncached(segment)).decode())


def _uncached(segment: Any) -> Any:
    return (
        {k: v for k, v in segment.items() if k != "cache_control"} if isinstance(segment, dict) else segment
    )


def input_tokens(body: dict[str, Any]) -> int:
    return 3 + sum(_tokens(s) for s in segments(body))


@dataclass
class PromptCache:
    """Prefixes written at ``cache_control`` breakpoints, by hash of model and prefix (no expiry)."""

    entries: set[str] = field(default_factory=set)

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        """``input_tokens`` / ``cache_creation_input_tokens`` / ``cache_read_input_tokens`` for ``body``,
        writing its breakpoints: the longest cached breakpoint prefix is read, the rest up to the last
        breakpoint written, what follows it billed as plain input."""
        digest = hashlib.sha256(body["model"].encode())
        total, breakpoints = 3, []
        for segment in segments(body):
            digest.update(orjson.dumps(_uncached(segment), option=orjson.OPT_SORT_KEYS))
            total += _tokens(segment)
            if isinstance(segment, dict) and "cache_control" in segment and total >= CACHE_MIN_TOKENS:
                breakpoints.append((digest.hexdigest(), total))
        read = max((tokens for key, tokens in breakpoints if key in self.entries), default=0)
        written = breakpoints[-1][1] - read if breakpoints and breakpoints[-1][1] > read else 0
        self.entries.update(key for key, _ in breakpoints)
        return {
            "input_tokens": total - read - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        }


@dataclass
class Answer:
    """What the fake model says: content blocks, why it stopped, and the output it bills."""

    content: list[dict[str, Any]]
    stop_reason: str

    @property
    def output_tokens(self) -> int:
        return max(
            1,
            sum(
                count_tokens(b.get("text") or b.get("thinking") or orjson.dumps(b.get("input")).decode())
                for b in self.content
            ),
        )


def _last_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in reversed(messages):
        if message["role"] == "user":
            return _blocks(message["content"], "")
    return []


def _tool_choice(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[0]
    # auto: the tool the user asked for by name ("use get_weather ..."), as a model would
    return next((t for t in tools if re.search(rf"\buse {re.escape(t['name'])}\b", text)), None)


def _arguments(tool: dict[str, Any]) -> dict[str, Any]:
    """Input for ``tool`` that satisfies its schema's required properties."""
    schema = tool.get("input_schema") or {}
    props = schema.get("properties") or {}
    samples: dict[object, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    return {
        name: samples.get((props.get(name) or {}).get("type"), "fake") for name in schema.get("required", [])
    }


def plan(body: dict[str, Any], reply: str | None = None) -> Answer:
    """The answer to ``body``: a tool call when one is asked for and the last turn is not its result,
    else ``reply`` or ``"echo: "`` + the last user text; a thinking block first when thinking is enabled."""
    last = _last_user(body["messages"])
    results = [b for b in last if b["type"] == "tool_result"]
    texts = [b["text"] for b in last if b["type"] == "text" and isinstance(b.get("text"), str)]
    text = texts[-1] if texts else ""
    content: list[dict[str, Any]] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        # ``display: omitted`` keeps the thought to the model: an empty block that still carries its signature
        thought = "" if thinking.get("display") == "omitted" else f"The user wrote {len(text)} characters."
        content.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
    tool = None if results else _tool_choice(body, text)
    if tool is not None:
        call = {"type": "tool_use", "id": new_id("toolu_"), "name": tool["name"], "input": _arguments(tool)}
        return Answer([*content, call], "tool_use")
    if reply is None:
        reply = "echo: " + (_result_text(results[-1]) if results else text)
    return Answer([*content, {"type": "text", "text": reply}], "end_turn")


def _result_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    return "".join(b.get("text", "") for b in _blocks(content, "")) if content else ""


def message(body: dict[str, Any], answer: Answer, usage: dict[str, int], msg_id: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": answer.content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": {
            **usage,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"],
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": answer.output_tokens,
            "service_tier": "standard",
        },
    }
