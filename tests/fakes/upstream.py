"""A fake OpenAI-compatible upstream: the stand-in for real providers in tests and benchmarks.

Answers are deterministic (``"echo: " + <last user text>``, token counts from :func:`count_tokens`,
vectors from :func:`fake_embedding`) so tests can predict them, and knobs set on :class:`FakeUpstream`
script the failures a gateway must survive: error statuses with ``Retry-After``, hangs, dropped
connections, truncated streams and permanently failing models. Knobs are set on the object rather than
in the request because the proxy under test may rewrite requests; setters are thread-safe because the
fake usually runs in a :class:`~tests.fakes.background.BackgroundServer` thread.

Run standalone for benchmarks: ``python -m tests.fakes.upstream --port 9000 --latency-ms 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .batch_model import batch_responder
from .provider_model import DecodeLatency, PrefixCache
from .upstream_bodies import (
    ApiError,
    ChatAnswer,
    Responder,
    chat_completion,
    completion,
    count_tokens,
    embeddings,
    error_body,
    fake_embedding,
    new_id,
    plan_chat,
    plan_completion,
    prompt_tokens,
)
from .upstream_files import FileStore
from .upstream_leaks import LEAK_MODES, leak
from .upstream_messages import messages
from .upstream_responses import ResponsesApi
from .upstream_sse import chat_chunks, completion_chunks, split_words, write_sse

__all__ = [
    "FakeUpstream",
    "RecordedRequest",
    "count_tokens",
    "default_error",
    "fake_embedding",
    "main",
    "prompt_tokens",
]

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "o3-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
_CLOSING = web.AppKey("fake_closing", asyncio.Event)
# The parsed JSON body (read once, in the middleware): any JSON value, or _INVALID_JSON.
_BODY: web.RequestKey[Any] = web.RequestKey("fake_body", object)
_BREAK_AFTER = web.RequestKey("fake_break_after", int)
_INVALID_JSON = object()
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    403: ("You are not allowed to perform this request.", "invalid_request_error", "unsupported_country"),
    404: ("The requested resource does not exist.", "invalid_request_error", None),
    408: ("Request timed out.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def default_error(status: int, model: str | None = None) -> dict[str, Any]:
    """The body the real API sends with ``status`` (``model_not_found`` for a 404 about a model)."""
    if status == 404 and model:
        return error_body(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            "model_not_found",
        )
    default = ("Error.", "server_error" if status >= 500 else "invalid_request_error", None)
    return error_body(*_ERRORS.get(status, default))


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        status=status,
        content_type="application/json",
        headers={"x-request-id": new_id("req_"), **(headers or {})},
    )


def _mask(key: str) -> str:
    """Mask a key the way OpenAI's 401 message does: ``sk-abc****wxyz``."""
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "*" * len(key)


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake received it (header names lower-cased; ``json`` None if not JSON)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    at: float  # time.monotonic() on arrival, to measure retry back-off


@dataclass(slots=True)
class _Fault:
    kind: str  # "status" | "hang" | "break" | "drop" | "leak"
    remaining: int
    path: str | None
    status: int = 500
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0
    after_chunks: int = 0
    leak: str = ""

    def matches(self, path: str, streaming: bool) -> bool:
        if self.kind == "break" and not streaming:
            return False  # only a stream can be cut; let plain requests through
        return self.path is None or path in (self.path, "/v1" + self.path)


class FakeUpstream:
    """State, knobs and request log of the fake; :meth:`app` builds the aiohttp application."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        expected_key: str | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        responder: Responder | None = None,
        record: bool = True,
    ) -> None:
        self._defaults = (latency_s, chunk_delay_s, expected_key, responder)
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.expected_key = expected_key
        self.responder = responder
        self.linger_s = 0.0  # how long a finished stream stays open after [DONE]
        self.decode: DecodeLatency | None = None  # chat answers take time by their completion tokens
        self.prefix_cache: PrefixCache | None = None  # bill repeated prompt prefixes as cached_tokens
        self.on_chat: Callable[[dict[str, Any], ChatAnswer], None] | None = None  # sees every chat answer
        self.models = list(models)
        self.record = record  # False keeps only per-path counts (long benchmarks)
        self.requests: list[RecordedRequest] = []
        self.counts: Counter[str] = Counter()
        self.files = FileStore(self.answer)
        self.responses = ResponsesApi()
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._failing_models: dict[str, tuple[int, dict[str, Any] | None]] = {}

    # -- knobs (thread-safe) ------------------------------------------------------------------------------
    def _push(self, fault: _Fault) -> None:
        if fault.remaining > 0:
            with self._lock:
                self._faults.append(fault)

    def fail_next(
        self,
        times: int = 1,
        status: int = 429,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``Retry-After`` if given)."""
        self._push(_Fault("status", times, path, status=status, retry_after=retry_after, body=body))

    def hang_next(self, times: int = 1, seconds: float = 30.0, path: str | None = None) -> None:
        """Delay the next answers by ``seconds`` (cut short when the server shuts down)."""
        self._push(_Fault("hang", times, path, seconds=seconds))

    def break_stream_next(self, times: int = 1, after_chunks: int = 2, path: str | None = None) -> None:
        """Cut the next streaming answers after ``after_chunks`` events, without ``[DONE]``."""
        self._push(_Fault("break", times, path, after_chunks=after_chunks))

    def drop_connection_next(self, times: int = 1, path: str | None = None) -> None:
        """Close the TCP connection of the next requests without sending any HTTP response."""
        self._push(_Fault("drop", times, path))

    def leak_next(self, mode: str, times: int = 1, path: str | None = None) -> None:
        """Echo the caller's key back in the next answers, the way ``mode`` does (see ``upstream_leaks``)."""
        if mode not in LEAK_MODES:
            raise ValueError(f"unknown leak mode {mode!r}; one of {LEAK_MODES}")
        self._push(_Fault("leak", times, path, leak=mode))

    def fail_model(self, model: str, status: int = 500, body: dict[str, Any] | None = None) -> None:
        """Fail every request for ``model`` with ``status`` until :meth:`clear`/:meth:`reset`."""
        with self._lock:
            self._failing_models[model] = (status, body)

    def clear(self) -> None:
        """Drop scripted faults and failing models (keeps the request log)."""
        with self._lock:
            self._faults.clear()
            self._failing_models.clear()

    def reset(self) -> None:
        """Back to a fresh fake: no faults, no records, no files, constructor knobs."""
        self.clear()
        with self._lock:
            self.requests.clear()
            self.counts.clear()
        self.files.clear()
        self.responses.clear()
        self.latency_s, self.chunk_delay_s, self.expected_key, self.responder = self._defaults
        self.linger_s = 0.0

    # -- request log --------------------------------------------------------------------------------------
    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (``/chat/completions`` means ``/v1/chat/completions``), or all."""
        with self._lock:
            if path is None:
                return sum(self.counts.values())
            return self.counts[path] or (0 if path.startswith("/v1/") else self.counts["/v1" + path])

    @property
    def last(self) -> RecordedRequest | None:
        return self.requests[-1] if self.requests else None

    def answer(self, endpoint: str, body: Any) -> dict[str, Any]:
        """The non-streaming answer body for ``endpoint``; used for batch lines and test expectations."""
        path = endpoint if endpoint.startswith("/v1/") else "/v1" + endpoint
        if path == "/v1/chat/completions":
            return chat_completion(plan_chat(body, self.responder))
        if path == "/v1/completions":
            return completion(plan_completion(body))
        if path == "/v1/embeddings":
            return embeddings(body)
        if path == "/v1/responses":
            return self.responses.answer(body)
        raise ApiError(404, f"Invalid URL (POST {path})")

    # -- HTTP ---------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        app.router.add_routes(
            [
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/completions", self._completions),
                web.post("/v1/embeddings", self._embeddings),
                web.post("/v1/responses", self._responses),
                web.post("/v1/messages", messages),
                web.get("/v1/models", self._models),
                web.get("/v1/models/{model}", self._model),
                web.get("/_fake/stats", self._stats),
                web.post("/_fake/reset", self._reset),
                web.post("/_fake/config", self._config),
                *self.files.routes(),
                *self.responses.routes(),
            ]
        )
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    make_app = app

    async def _on_startup(self, app: web.Application) -> None:
        app[_CLOSING] = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        app[_CLOSING].set()  # wake hung handlers so shutdown is quick

    def _take_fault(self, path: str, streaming: bool) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(path, streaming):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[i]
                    return fault
        return None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_fake/"):
            return await handler(request)
        raw = await request.read()
        body: Any = None
        if raw and not request.content_type.startswith("multipart/"):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = _INVALID_JSON
        request[_BODY] = body
        with self._lock:
            self.counts[path] += 1
            if self.record:
                headers = {k.lower(): v for k, v in request.headers.items()}
                parsed = None if body is _INVALID_JSON else body
                self.requests.append(
                    RecordedRequest(
                        request.method, path, dict(request.query), headers, parsed, raw, time.monotonic()
                    )
                )
        try:
            return await self._dispatch(request, handler, body)
        except ApiError as exc:
            return _json(exc.body, exc.status, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            what = "Invalid method for URL" if exc.status == 405 else "Invalid URL"
            return _json(error_body(f"{what} ({request.method} {path})", "invalid_request_error"), exc.status)

    async def _dispatch(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], body: Any
    ) -> web.StreamResponse:
        key = self.expected_key
        if key is not None:
            auth = request.headers.get("Authorization", "")
            if auth != "Bearer " + key:
                given = auth.removeprefix("Bearer ").strip()
                if not given:
                    raise ApiError(
                        401,
                        "You didn't provide an API key. You need to provide your API key in "
                        "an Authorization header using Bearer auth (i.e. Authorization: Bearer "
                        "YOUR_KEY).",
                    )
                raise ApiError(
                    401,
                    f"Incorrect API key provided: {_mask(given)}. You can find your API key "
                    "at https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
        fault = None
        if self._faults:
            fault = self._take_fault(request.path, isinstance(body, dict) and body.get("stream") is True)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if fault is not None:
            if fault.kind == "status":
                headers: dict[str, str] = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = format(fault.retry_after, "g")
                return _json(fault.body or default_error(fault.status), fault.status, headers)
            if fault.kind == "leak":
                chat = isinstance(body, dict) and isinstance(body.get("messages"), list)
                answer = plan_chat(body, self.responder) if chat else None
                return await leak(fault.leak, request, handler, answer)
            if fault.kind == "drop":
                if request.transport is not None:
                    request.transport.close()
                return web.Response()  # aiohttp finds the transport closed and sends nothing
            if fault.kind == "hang":
                closing = request.app.get(_CLOSING) or asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), fault.seconds)
            elif fault.kind == "break":
                request[_BREAK_AFTER] = fault.after_chunks
        if self._failing_models and isinstance(body, dict):
            model = body.get("model")
            failing = self._failing_models.get(model) if isinstance(model, str) else None
            if failing is not None:
                return _json(failing[1] or default_error(failing[0], body.get("model")), failing[0])
        return await handler(request)

    def _stream_options(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("stream_options")
        return {
            "include_usage": isinstance(options, dict) and bool(options.get("include_usage")),
            "chunk_delay_s": self.chunk_delay_s,
            "break_after": request.get(_BREAK_AFTER),
            "linger_s": self.linger_s,
        }

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        answer = plan_chat(body, self.responder)
        if self.prefix_cache is not None:
            answer.cached_tokens = min(answer.prompt_tokens, self.prefix_cache.lookup(body))
        if self.on_chat is not None:
            self.on_chat(body, answer)
        streamed = body.get("stream") is True
        if self.decode is not None:  # a stream's tokens come one by one, a whole answer at the end
            tokens = answer.completion_tokens * answer.n
            await asyncio.sleep(self.decode.base_s if streamed else self.decode.seconds(tokens))
        if streamed:
            opts = self._stream_options(request, body)
            if self.decode is not None:
                pieces = max(1, len(split_words(answer.content or "")))
                opts["chunk_delay_s"] = self.decode.per_token_s * answer.completion_tokens / pieces
            return await write_sse(request, chat_chunks(answer, opts.pop("include_usage")), **opts)
        return _json(chat_completion(answer))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        answer = plan_completion(body)
        if body.get("stream") is True:
            opts = self._stream_options(request, body)
            return await write_sse(request, completion_chunks(answer, opts.pop("include_usage")), **opts)
        return _json(completion(answer))

    async def _embeddings(self, request: web.Request) -> web.Response:
        return _json(embeddings(request[_BODY]))

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self.responses.handle_create(
            request, request[_BODY], chunk_delay_s=self.chunk_delay_s, break_after=request.get(_BREAK_AFTER)
        )

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}

    async def _models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [self._model_object(m) for m in self.models]})

    async def _model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return _json(self._model_object(model))

    async def _stats(self, request: web.Request) -> web.Response:
        """Counts for benchmarks that run the fake as a separate process."""
        with self._lock:
            return _json({"requests": sum(self.counts.values()), "by_path": dict(self.counts)})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})

    async def _config(self, request: web.Request) -> web.Response:
        """Change ``latency_s``/``chunk_delay_s``/``expected_key``/``record`` of a running fake."""
        changes = orjson.loads(await request.read() or b"{}")
        for name in ("latency_s", "chunk_delay_s", "expected_key", "record"):
            if name in changes:
                setattr(self, name, changes[name])
        return _json({"ok": True})


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready http://{host}:{runner.addresses[0][1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: serve a fake upstream until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream", description="Serve a fake OpenAI-compatible API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port (see the 'ready' line)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between SSE chunks")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    parser.add_argument("--record", action="store_true", help="keep every request in memory, not just counts")
    parser.add_argument("--batch-aware", action="store_true", help="answer micro-batch prompts like a model")
    args = parser.parse_args(argv)
    responder = batch_responder() if args.batch_aware else None
    fake = FakeUpstream(
        latency_s=args.latency_ms / 1000,
        chunk_delay_s=args.chunk_delay_ms / 1000,
        expected_key=args.api_key,
        record=args.record,
        responder=responder,
    )
    run: Callable[[Any], None] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    run(_serve(fake.app(), args.host, args.port))


if __name__ == "__main__":
    main()
