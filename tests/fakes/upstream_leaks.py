"""A careless provider for the fake upstream: answers that echo the caller's key back, each on another
channel, so a test can prove the gateway never lets it through to a client.

Modes (``FakeUpstream.leak_next(mode)``; the key echoed is the one the request carried):

- ``escaped_error``: a 400 whose JSON message writes the key with every character ``\\uXXXX``-escaped,
  and once more with only its dashes escaped (``sk\\u002d...``).
- ``headers``: a normal answer whose ``x-request-id`` is ``Bearer <key>``, with the key percent-encoded
  in ``openai-processing-ms`` and plain in headers a gateway should not relay (``set-cookie``...).
- ``sse_error``: a stream that sends one chunk, then an error event quoting the key, then ends.
- ``long_error``: a 503 in ``text/plain`` whose key starts at character 184 (cut at 200, 16 leak).
- ``plain_error``: a ``text/plain`` ``404: Not Found``, as some providers answer unknown routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .upstream_bodies import ChatAnswer, error_body, new_id
from .upstream_sse import SSE_HEADERS, chat_chunks

LEAK_MODES = ("escaped_error", "headers", "sse_error", "long_error", "plain_error")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def leak(
    mode: str, request: web.Request, handler: Handler, answer: ChatAnswer | None
) -> web.StreamResponse:
    """The answer of ``mode`` for a request carrying ``Authorization: Bearer <key>``."""
    key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or "no-key-given"
    if mode == "escaped_error":
        every = "".join(f"\\u{ord(c):04x}" for c in key)
        dashes = key.replace("-", "\\u002d")
        message = f"Incorrect API key provided: {every}; retry with {dashes}."
        body = orjson.dumps(error_body("@@", "invalid_request_error", None, "invalid_api_key"))
        return web.Response(
            status=400, body=body.replace(b"@@", message.encode()), content_type="application/json"
        )
    if mode == "headers":
        response = await handler(request)
        percent = "".join(f"%{b:02X}" for b in key.encode())
        response.headers.update(
            {
                "x-request-id": f"Bearer {key}",
                "openai-processing-ms": percent,
                "set-cookie": f"session={key}",
                "x-echo-authorization": f"Bearer {key}",
            }
        )
        return response
    if mode == "sse_error":
        if answer is None:
            raise ValueError("sse_error answers chat completions only")
        response = web.StreamResponse(headers={**SSE_HEADERS, "x-request-id": new_id("req_")})
        await response.prepare(request)
        first = next(iter(chat_chunks(answer, include_usage=False)))
        await response.write(b"data: " + orjson.dumps(first) + b"\n\n")
        error = error_body(f"Upstream auth failed for Authorization: Bearer {key}", "server_error")
        await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
        await response.write_eof()
        return response
    if mode == "long_error":
        text = "The upstream proxy could not forward this request because ".ljust(184, ".") + key + " failed."
        return web.Response(status=503, text=text, content_type="text/plain")
    if mode == "plain_error":
        return web.Response(status=404, text="404: Not Found", content_type="text/plain")
    raise ValueError(f"unknown leak mode {mode!r}; one of {LEAK_MODES}")
