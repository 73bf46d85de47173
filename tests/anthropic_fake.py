"""A fake Anthropic Messages API on loopback, for litellm's ``anthropic/`` route (plain and streamed answers,
and error replies with chosen status and headers)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

USAGE = {"input_tokens": 5, "output_tokens": 2}


@dataclass
class FakeAnthropic:
    """Answers ``POST /v1/messages`` with "echo: <last user text>"; ``fail`` makes the next answers errors."""

    expected_key: str
    url: str = ""
    """Base URL once served (set by whoever starts the server)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        return app

    def fail(
        self, status: int, headers: dict[str, str] | None = None, message: str = "slow down", times: int = 1
    ) -> None:
        self.failures.extend([(status, headers or {}, message)] * times)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("x-api-key") != self.expected_key:
            return _error(401, "authentication_error", "invalid x-api-key", {})
        if self.failures:
            status, headers, message = self.failures.pop(0)
            return _error(status, "rate_limit_error" if status == 429 else "api_error", message, headers)
        text = "echo: " + _last_text(body["messages"])
        if not body.get("stream"):
            content = [{"type": "text", "text": text}]
            return web.json_response({**_message(body["model"], content), "stop_reason": "end_turn"})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in _events(body["model"], text):
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response


def _message(model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": USAGE,
    }


def _events(model: str, text: str) -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": _message(model, [])},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": USAGE["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


def _last_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def _error(status: int, kind: str, message: str, headers: dict[str, str]) -> web.Response:
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(payload, status=status, headers=headers)
