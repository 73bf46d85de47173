"""``python -m benchmarks.sprint.provider``: the fake provider of the sprint benchmark, as its own process.

The fake upstream with the sprint's answers, decode latency (150 ms + 8 ms per completion token) and
OpenAI-style prefix caching, plus ``GET /_sprint/calls``: every chat call it answered (when, which
tasks, what it billed), the independent record the KPIs are measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.batch_model import tasks_in
from tests.fakes.provider_model import DecodeLatency, PrefixCache
from tests.fakes.upstream import FakeUpstream, _serve
from tests.fakes.upstream_bodies import ChatAnswer, last_user_text

from .workload import sprint_responder


def build(base_ms: float, per_token_ms: float, seed: int) -> web.Application:
    fake = FakeUpstream(responder=sprint_responder, record=False)
    decode = fake.decode = DecodeLatency(base_ms / 1000, per_token_ms / 1000)
    fake.prefix_cache = PrefixCache(seed=seed)
    calls: list[dict[str, Any]] = []

    def log_call(body: dict[str, Any], answer: ChatAnswer) -> None:
        text = last_user_text(body.get("messages") or [])
        received = time.monotonic()
        calls.append(
            {
                "received": received,
                "done": received + decode.seconds(answer.completion_tokens),
                "model": body.get("model"),
                "tasks": list(tasks_in(text).values()) or [text],
                "stream": body.get("stream") is True,
                "prompt_cache_key": body.get("prompt_cache_key"),
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "cached_tokens": answer.cached_tokens,
            }
        )

    fake.on_chat = log_call
    app = fake.app()

    async def get_calls(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(calls), content_type="application/json")

    app.router.add_get("/_sprint/calls", get_calls)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sprint.provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--base-ms", type=float, default=150.0)
    parser.add_argument("--per-token-ms", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(build(args.base_ms, args.per_token_ms, args.seed), args.host, args.port))


if __name__ == "__main__":
    main()
