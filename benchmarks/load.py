"""The load-tool interface: one result type, a probe, and the choice between wrk and the built-in tool.

Direct upstream and gateway are always measured with the same tool in one run, so their difference is
the gateway's and not the tools'. wrk is preferred (C, one thread, lowest client overhead); the aiohttp
generator is the fallback on machines without it.
"""

from __future__ import annotations

import math
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .workload import Workload

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one fixed-concurrency, fixed-duration run measured (latencies of successful requests)."""

    tool: str
    concurrency: int
    duration_s: float
    requests: int
    """Successful (non-error) answers."""
    errors: int
    """Non-2xx answers, socket errors and timeouts."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


class LoadTool(Protocol):
    name: str

    def run(self, base_url: str, workload: Workload, concurrency: int, duration_s: float) -> LoadResult:
        """Keep ``concurrency`` keep-alive connections busy for ``duration_s`` seconds on ``base_url``."""
        ...


def pick_tool(name: str, wrk_threads: int = 1) -> LoadTool:
    """``auto``: wrk when it is on the PATH, else the built-in aiohttp generator."""
    from .load_aiohttp import AiohttpLoad
    from .load_wrk import WrkLoad

    if name == "wrk" or (name == "auto" and shutil.which("wrk")):
        return WrkLoad(threads=wrk_threads)
    if name in ("auto", "aiohttp"):
        return AiohttpLoad()
    raise ValueError(f"unknown load tool '{name}' (auto, wrk, aiohttp)")


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_id() -> str:
    """A short random prefix for unique ids, so warm-up, direct and gateway runs never share a body."""
    return secrets.token_hex(4)


def probe(base_url: str, workload: Workload) -> str | None:
    """Send one request of each template; None if all answered 2xx with the expected content, else why not."""
    for template in workload.templates:
        request = urllib.request.Request(
            base_url + workload.path,
            data=template.render("probe-" + run_id()),
            headers=dict(template.headers),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        if workload.expect and workload.expect not in body:
            return f"answer lacks {workload.expect!r}: {body[-300:]!r}"
    return None
