"""The fallback load generator: aiohttp keep-alive connections, fixed concurrency, fixed duration.

Each of ``concurrency`` coroutines sends its next request as soon as the previous answer is read in full
(time to last byte, so streams are measured end to end) and records the latency with ``perf_counter``.
It shares the CPU with the servers it measures, so it flatters nothing, but it costs more than wrk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from .load import REQUEST_TIMEOUT_S, LoadResult, percentile, run_id
from .workload import Workload


def _run_loop(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with the gateway's dependencies
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _load(base_url: str, workload: Workload, concurrency: int, duration_s: float) -> LoadResult:
    url = base_url + workload.path
    templates = workload.templates
    prefix = run_id()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def connection(index: int) -> None:
            nonlocal errors
            seq = 0
            while time.perf_counter() < deadline:
                template = templates[seq % len(templates)]
                seq += 1
                body = template.render(f"{prefix}-{index}-{seq}")
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=template.headers) as response:
                        await response.read()
                        ok = response.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(connection(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        tool="aiohttp",
        concurrency=concurrency,
        duration_s=elapsed,
        requests=len(latencies),
        errors=errors,
        p50_ms=percentile(latencies, 50) * 1000,
        p95_ms=percentile(latencies, 95) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        mean_ms=sum(latencies) / len(latencies) * 1000 if latencies else 0.0,
        max_ms=latencies[-1] * 1000 if latencies else 0.0,
    )


@dataclass(frozen=True, slots=True)
class AiohttpLoad:
    name: str = "aiohttp"

    def run(self, base_url: str, workload: Workload, concurrency: int, duration_s: float) -> LoadResult:
        return _run_loop(_load(base_url, workload, concurrency, duration_s))
