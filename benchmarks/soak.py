"""``python -m benchmarks.soak``: RSS per worker under a long load, and whether it keeps growing.

One scenario (default ``cache-miss``: every body new, so the cache fills until its bounds evict) runs for
``--duration`` seconds against the gateway with OpenAI-compatible providers only; every ``--every``
seconds the RSS of each worker is sampled. The slope (MB/min, least squares) after the first minute says
whether memory is flat once warm: a bounded process levels off, a leak keeps climbing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .gateway_policy import gateway_policy, write_yaml
from .load import LoadResult, pick_tool
from .processes import start_gateway, start_upstream, worker_rss_mb
from .scenarios import get_scenario

WARM_S = 60.0


def slope_mb_per_min(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute; None for fewer than two points."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread


def soak(scenario_name: str, duration_s: float, every_s: float, level: str, concurrency: int) -> dict:
    scenario = get_scenario(scenario_name)
    tool = pick_tool("auto")
    with tempfile.TemporaryDirectory(prefix="llmgw-soak-") as tmp:
        run_dir = Path(tmp)
        upstream, upstream_url = start_upstream(run_dir, 0.0)
        try:
            policy = gateway_policy(upstream_url, level, "", scenario.policy_overrides())
            proc, url = start_gateway(run_dir, "soak", write_yaml(run_dir / "policy.yaml", policy), 1)
            try:
                results: list[LoadResult] = []
                load = threading.Thread(
                    target=lambda: results.append(tool.run(url, scenario.workload, concurrency, duration_s))
                )
                started = time.monotonic()
                load.start()
                samples: list[tuple[float, list[float]]] = []
                while load.is_alive():
                    samples.append((time.monotonic() - started, worker_rss_mb(proc.pid)))
                    print(
                        f"[soak] {samples[-1][0]:6.0f} s  RSS {samples[-1][1]} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                    load.join(every_s)
                samples.append((time.monotonic() - started, worker_rss_mb(proc.pid)))
            finally:
                proc.stop()
        finally:
            upstream.stop()
    worst = [(t, max(rss)) for t, rss in samples if rss]
    warm = [(t, mb) for t, mb in worst if t >= WARM_S]
    result = results[0] if results else None
    return {
        "scenario": scenario_name,
        "log_level": level,
        "duration_s": duration_s,
        "concurrency": concurrency,
        "rps": round(result.rps, 1) if result else None,
        "errors": result.errors if result else None,
        "rss_max_mb": round(max(mb for _, mb in worst), 1) if worst else None,
        "rss_end_mb": round(worst[-1][1], 1) if worst else None,
        "slope_after_first_minute_mb_per_min": _round(slope_mb_per_min(warm)),
        "samples": [[round(t, 1), [round(mb, 1) for mb in rss]] for t, rss in samples],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--scenario", default="cache-miss")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    found = soak(args.scenario, args.duration, args.every, args.log_level, args.concurrency)
    text = json.dumps(found, indent=2)
    print({k: v for k, v in found.items() if k != "samples"})
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
