"""The Anthropic Messages API on the fake OpenAI upstream (``python -m tests.fakes.upstream``), so a
benchmark measures ``/v1/messages`` against the same process as chat. Lenient (any key, no header
checks): the strict fake for tests is :mod:`tests.fakes.upstream_anthropic`."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.protocols.message_stream import replay_message
from tests.fakes.anthropic_bodies import input_tokens, message, new_id, plan

_SSE = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


async def messages(request: web.Request) -> web.StreamResponse:
    """A message, or its event sequence for ``stream: true``, echoing the last user text (the fake's
    ``--latency-ms`` applies, as to every route)."""
    body = orjson.loads(await request.read())
    usage = {
        "input_tokens": input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    answer = message(body, plan(body), usage, new_id("msg_"))
    if body.get("stream") is not True:
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
    response = web.StreamResponse(headers=_SSE)
    await response.prepare(request)
    await response.write(b"".join(replay_message(answer, 8)))
    await response.write_eof()
    return response
