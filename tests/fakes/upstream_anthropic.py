"""A fake Anthropic Messages API, as strict as the real one: the stand-in for ``api.anthropic.com``.

It checks what the real API checks (``x-api-key`` or ``Authorization: Bearer``, ``anthropic-version``, the
body, see ``anthropic_bodies``), bills prompt caching at ``cache_control`` breakpoints, streams the real
event sequence as ``event:`` + ``data:`` lines, and scripts the failures a proxy must survive (429 with
``retry-after``, 529 overloaded, 500, slow answers, a stream cut by an ``event: error``). Every request is
recorded as :class:`~tests.fakes.upstream.RecordedRequest`. :func:`serve_anthropic` serves it for a block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web

from .anthropic_bodies import (
    ERROR_MESSAGES,
    ERROR_TYPES,
    Answer,
    AnthropicError,
    PromptCache,
    error_body,
    input_tokens,
    message,
    new_id,
    plan,
    validate,
)
from .background import BackgroundServer
from .upstream import RecordedRequest

__all__ = ["AnthropicUpstream", "serve_anthropic"]

_BODY: web.RequestKey[Any] = web.RequestKey("anthropic_body", object)
_ID = web.RequestKey("anthropic_request_id", str)
_INVALID = object()
_CLOSING = web.AppKey("anthropic_closing", asyncio.Event)
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


@dataclass(slots=True)
class _Fault:
    kind: str  # "status" | "hang" | "break"
    remaining: int
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    seconds: float = 0.0
    after_events: int = 0


class AnthropicUpstream:
    """State, knobs and request log of the fake; :meth:`app` builds the aiohttp application.

    ``reply`` replaces the default ``"echo: <last user text>"`` answer; ``latency_s`` delays every answer.
    """

    def __init__(self, expected_key: str, *, reply: str | None = None, latency_s: float = 0.0) -> None:
        self.expected_key = expected_key
        self.reply = reply
        self.latency_s = latency_s
        self.requests: list[RecordedRequest] = []
        self.cache = PromptCache()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    # -- knobs (thread-safe) ------------------------------------------------------------------------------
    def fail_next(
        self,
        status: int = 529,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` message requests with ``status`` (and ``retry-after`` if given)."""
        with self._lock:
            self._faults.append(_Fault("status", times, status, retry_after, message))

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Delay the next answers by ``seconds``."""
        with self._lock:
            self._faults.append(_Fault("hang", times, seconds=seconds))

    def break_stream_next(self, after_events: int = 3, *, times: int = 1) -> None:
        """End the next streams after ``after_events`` events with ``event: error`` (overloaded_error)."""
        with self._lock:
            self._faults.append(_Fault("break", times, after_events=after_events))

    def _take_fault(self, streaming: bool) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.kind != "break" or streaming:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[i]
                    return fault
        return None

    def messages(self, path: str = "/v1/messages") -> list[RecordedRequest]:
        """The recorded requests to ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- HTTP ---------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024**2)
        app.router.add_routes(
            [
                web.post("/v1/messages", self._messages),
                web.post("/v1/messages/count_tokens", self._count_tokens),
                web.get("/", self._root),  # also answers HEAD
            ]
        )
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        app[_CLOSING] = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        app[_CLOSING].set()  # wake hung handlers so shutdown is quick

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = _INVALID
        request[_BODY], request[_ID] = body, new_id("req_")
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.query),
                    headers,
                    None if body is _INVALID else body,
                    raw,
                    time.monotonic(),
                )
            )
        try:
            return await handler(request)
        except AnthropicError as exc:
            return self._error(request, exc.status, exc.type, str(exc), exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self._error(
                request, exc.status, ERROR_TYPES.get(exc.status, "not_found_error"), "Not Found"
            )

    def _error(
        self, request: web.Request, status: int, kind: str, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=orjson.dumps(error_body(kind, text, request[_ID])),
            status=status,
            content_type="application/json",
            headers={**_headers(request), **(headers or {})},
        )

    async def _root(self, request: web.Request) -> web.Response:
        """The host root, where a client checks that the API is reachable: a 404 JSON error, no page."""
        return self._error(request, 404, "not_found_error", "Not Found")

    def _check(self, request: web.Request, *, count_only: bool = False) -> dict[str, Any]:
        given = request.headers.get("x-api-key")
        if given is None and request.headers.get("authorization", "").startswith("Bearer "):
            given = request.headers["authorization"].removeprefix("Bearer ")
        if given != self.expected_key:
            raise AnthropicError(401, "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            raise AnthropicError(400, "anthropic-version: header is required")
        body = request[_BODY]
        if body is _INVALID:
            raise AnthropicError(400, "There was an error parsing the body of your request.")
        betas = frozenset(
            b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()
        )
        validate(body, count_only=count_only, betas=betas)
        return cast("dict[str, Any]", body)  # validate() accepts only a JSON object

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = self._check(request, count_only=True)
        return web.json_response({"input_tokens": input_tokens(body)}, headers=_headers(request))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = self._check(request)
        streaming = body.get("stream") is True
        fault = self._take_fault(streaming) if self._faults else None
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if fault is not None and fault.kind == "status":
            headers = {} if fault.retry_after is None else {"retry-after": format(fault.retry_after, "g")}
            text = fault.message or ERROR_MESSAGES.get(fault.status, "Error")
            raise AnthropicError(fault.status, text, headers)
        if fault is not None and fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(request.app[_CLOSING].wait(), fault.seconds)
        answer = plan(body, self.reply)
        with self._lock:
            usage = self.cache.usage(body)
        msg_id = new_id("msg_")
        if not streaming:
            return web.json_response(message(body, answer, usage, msg_id), headers=_headers(request))
        cut = fault.after_events if fault is not None and fault.kind == "break" else None
        return await self._stream(request, _events(body, answer, usage, msg_id), cut)

    async def _stream(
        self, request: web.Request, events: Iterator[dict[str, Any]], cut: int | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**_SSE_HEADERS, **_headers(request)})
        await response.prepare(request)
        for sent, event in enumerate(events):
            if sent == cut:
                event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            await response.write(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
            if sent == cut:
                break
        await response.write_eof()
        return response


@contextlib.contextmanager
def serve_anthropic(expected_key: str, **knobs: Any) -> Iterator[tuple[AnthropicUpstream, str]]:
    """A fake in a ``BackgroundServer`` for the block: ``(fake, base URL)``."""
    fake = AnthropicUpstream(expected_key, **knobs)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url


def _headers(request: web.Request) -> dict[str, str]:
    """What the real API sends with every answer: a request id, the organisation, rate-limit state."""
    return {
        "request-id": request[_ID],
        "anthropic-organization-id": "00000000-0000-4000-8000-000000000000",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
    }


def _events(
    body: dict[str, Any], answer: Answer, usage: dict[str, int], msg_id: str
) -> Iterator[dict[str, Any]]:
    """The real stream: message_start, then per block start (a ping after the first), deltas and stop,
    then message_delta with the stop reason and cumulative usage, and message_stop."""
    start = message(body, Answer([], answer.stop_reason), usage, msg_id)
    start.update(stop_reason=None, usage={**start["usage"], "output_tokens": 1})
    yield {"type": "message_start", "message": start}
    for index, block in enumerate(answer.content):
        kind = block["type"]
        empties: dict[str, dict[str, Any]] = {
            "text": {"text": ""},
            "thinking": {"thinking": "", "signature": ""},
            "tool_use": {"id": block.get("id"), "name": block.get("name"), "input": {}},
        }
        empty = empties[kind]
        yield {"type": "content_block_start", "index": index, "content_block": {"type": kind, **empty}}
        if index == 0:
            yield {"type": "ping"}
        for delta in _deltas(block):
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
        "usage": {**usage, "output_tokens": answer.output_tokens},
    }
    yield {"type": "message_stop"}


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _deltas(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if block["type"] == "text":
        yield from ({"type": "text_delta", "text": piece} for piece in _pieces(block["text"]))
    elif block["type"] == "thinking":
        yield from ({"type": "thinking_delta", "thinking": piece} for piece in _pieces(block["thinking"]))
        yield {"type": "signature_delta", "signature": block["signature"]}
    else:
        arguments = orjson.dumps(block["input"]).decode()
        yield from ({"type": "input_json_delta", "partial_json": piece} for piece in _pieces(arguments))
