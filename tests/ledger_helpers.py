"""Shared by the ledger, report and replay tests: a gateway that runs for a block (its ledger is flushed
when it stops), traffic helpers, and readers for what it recorded."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import orjson
import redis

from gateway.policy import Policy
from gateway.server import create_app
from tests.conftest import GATEWAY_KEY
from tests.fakes.background import BackgroundServer

SYSTEM = {"role": "system", "content": "You are a careful refactoring assistant. " * 20}
_TASK = re.compile(r"### Task (t\d+)\n(.*?)(?=\n\n### Task |\Z)", re.S)


@contextmanager
def running(policy: dict[str, Any]) -> Iterator[str]:
    """A gateway for the block; leaving it stops the gateway, which writes out its whole ledger."""
    server = BackgroundServer(create_app(Policy.model_validate(policy)), handler_cancellation=True).start()
    try:
        yield server.url
    finally:
        server.stop()


def batch_responder() -> Callable[[dict[str, Any]], str]:
    """Answers a batch prompt like a model: one JSON object keyed by task id; anything else is echoed."""

    def respond(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        tasks = dict(_TASK.findall(last))
        return json.dumps({tid: "echo: " + text for tid, text in tasks.items()}) if tasks else "echo: " + last

    return respond


async def chat(url: str, content: str, delay: float = 0.0, model: str = "gpt-4o-mini", **headers: str) -> Any:
    """One chat completion with the raw response (headers), after ``delay`` seconds."""
    await asyncio.sleep(delay)
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0, default_headers=headers
    ) as client:
        return await client.chat.completions.with_raw_response.create(
            model=model, messages=[SYSTEM, {"role": "user", "content": content}]
        )


def stream_records(redis_url: str, stream: str = "llm_ledger") -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(fields[b"record"]) for _, fields in client.xrange(stream)]
    finally:
        client.close()


def file_lines(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(request records, heartbeat lines) of a ledger file."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") != "heartbeat"], [
        r for r in rows if r.get("kind") == "heartbeat"
    ]
