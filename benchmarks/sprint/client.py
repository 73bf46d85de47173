"""Send the sprint's requests at their times (open loop) and record what each caller saw."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from .workload import SprintRequest, answer_for


@dataclass(slots=True)
class Seen:
    """One request as its caller saw it."""

    request: SprintRequest
    sent: float
    """``time.monotonic()`` when sent (comparable with the provider's call log on this machine)."""
    latency_ms: float
    status: int
    right: bool
    """The answer is this task's own answer, whole."""
    cache: str | None = None
    batch: str | None = None
    model: str | None = None


async def replay(base_url: str, requests: list[SprintRequest], model: str | None = None) -> list[Seen]:
    """Send each request at its ``at`` (``model`` None: ``auto``, for the gateway to route)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()

        async def one(req: SprintRequest) -> Seen:
            delay = start + req.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            return await _send(session, base_url, req, model or "auto")

        return list(await asyncio.gather(*(one(r) for r in requests)))


async def _send(session: aiohttp.ClientSession, base_url: str, req: SprintRequest, model: str) -> Seen:
    sent = time.monotonic()
    body = orjson.dumps(req.body(model))
    try:
        async with session.post(
            base_url + "/v1/chat/completions", data=body, headers=req.request_headers()
        ) as response:
            raw = await response.read()
            status = response.status
            headers = response.headers
    except (aiohttp.ClientError, TimeoutError):
        return Seen(req, sent, (time.monotonic() - sent) * 1000, 599, False)
    latency = (time.monotonic() - sent) * 1000
    right = False
    got_model = None
    if status == 200:
        try:
            answer = orjson.loads(raw)
            right = answer["choices"][0]["message"]["content"] == answer_for(req.task)
            got_model = answer.get("model")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            right = False
    return Seen(
        req,
        sent,
        latency,
        status,
        right,
        headers.get("X-Cache"),
        headers.get("X-Gateway-Batch"),
        headers.get("X-Gateway-Model") or got_model,
    )
