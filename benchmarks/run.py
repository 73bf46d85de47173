"""One benchmark run: start the processes, then measure every target of every scenario in turn.

Per scenario and concurrency the targets are measured back to back with the same tool: the direct
upstream first (the baseline), then each gateway variant, then LiteLLM. Each measurement is preceded by a
warm-up at the same concurrency. Everything started is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path

from tests.fakes.redis_server import RedisServer
from tests.fakes.redis_topologies import RedisClusterGroup

from .forwarder import start_forwarder
from .gateway_policy import gateway_policy, write_yaml
from .litellm_compare import LITELLM_VERSION, LiteLLMUnavailable, is_helper_process, start_litellm
from .load import LoadTool, pick_tool, probe
from .portkey_compare import PortkeyUnavailable, routing_headers, start_portkey
from .portkey_compare import version as portkey_version
from .processes import StartError, start_gateway, start_upstream, worker_rss_mb
from .profiling import Recording
from .report import DIRECT, Measurement, Report
from .scenarios import Scenario
from .workload import UNIQUE, Workload


@dataclass(frozen=True, slots=True)
class Options:
    scenarios: Sequence[Scenario]
    duration_s: float = 8.0
    warmup_s: float = 2.0
    latency_ms: float = 0.0
    workers: int = 1
    log_levels: Sequence[str] = ("warning", "info")
    stores: Sequence[str] = ()
    """Store variants of every gateway target (memory, redis, cluster); empty: memory, or one Redis
    server when several workers must share state."""
    concurrency: Sequence[int] = ()
    """Overrides every scenario's own levels when given."""
    tool: str = "auto"
    wrk_threads: int = 1
    repeat: int = 1
    """Measurements per target and concurrency; the median by throughput is reported."""
    compare_litellm: bool = False
    peers: Sequence[str] = ()
    """Other proxies measured beside the gateway on every scenario: ``forwarder`` (the bare aiohttp
    relay, the floor for this design) and ``portkey`` (the Portkey gateway)."""
    profile_dir: Path | None = None
    """Record a py-spy profile of every gateway measurement into this folder."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    kind: str
    base_url: str
    pid: int | None = None
    """Whose serving processes' RSS is read after each measurement."""
    helper: Callable[[int], bool] = field(default=lambda _: False)
    """Children that serve no requests and are left out of the RSS figures."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Added to every request sent to this target (Portkey's routing headers)."""

    def workload(self, workload: Workload) -> Workload:
        if not self.headers:
            return workload
        templates = tuple(replace(t, headers={**t.headers, **self.headers}) for t in workload.templates)
        return replace(workload, templates=templates)


def gateway_target(level: str, store: str = "") -> str:
    return f"gateway[{level},{store}]" if store else f"gateway[{level}]"


def _store_urls(options: Options, report: Report, stack: ExitStack) -> dict[str, str]:
    """The store URL of each variant, its servers started once for the whole run."""
    if not options.stores:  # several workers must share a store
        return {"": stack.enter_context(RedisServer()).url if options.workers > 1 else ""}
    if options.workers > 1 and "memory" in options.stores:
        raise StartError("several workers share state: measure --store redis or cluster, not memory")
    urls = {}
    for store in options.stores:
        if store == "redis":
            urls[store] = stack.enter_context(RedisServer()).url
        elif store == "cluster":
            urls[store] = stack.enter_context(RedisClusterGroup(masters=3)).url
        else:
            urls[store] = ""
    report.notes.append(
        "gateway[LEVEL,STORE]: memory is the in-process store, redis one local Redis server, cluster a "
        "3-master Redis Cluster on loopback (all on this machine's CPUs)"
    )
    return urls


def run(options: Options, report: Report) -> None:
    """Measure everything ``options`` asks for, appending to ``report`` as results come in."""
    tool = pick_tool(options.tool, options.wrk_threads)
    report.meta.update(
        tool=tool.name,
        duration_s=options.duration_s,
        warmup_s=options.warmup_s,
        repeat=options.repeat,
        latency_ms=options.latency_ms,
        workers=options.workers,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        platform=platform.platform(),
        targets_legend=f"{gateway_target('LEVEL')}: the gateway with logging.level LEVEL "
        "(info writes one JSON line per request, the operator default)",
    )
    with tempfile.TemporaryDirectory(prefix="llmgw-bench-") as tmp, ExitStack() as stack:
        run_dir = Path(tmp)
        upstream, upstream_url = start_upstream(run_dir, options.latency_ms)
        stack.callback(upstream.stop)
        store_urls = _store_urls(options, report, stack)
        litellm = None
        if options.compare_litellm and any(s.compare_litellm for s in options.scenarios):
            litellm = _start_litellm(run_dir, upstream_url, options, report, stack)
        elif options.compare_litellm:
            report.notes.append("LiteLLM not started: no selected scenario is comparable with it")
        peers = _start_peers(run_dir, upstream_url, options, report, stack)
        for scenario in options.scenarios:
            with ExitStack() as scoped:
                targets = [Target(DIRECT, DIRECT, upstream_url)]
                for (store, store_url), level in product(store_urls.items(), options.log_levels):
                    policy = gateway_policy(upstream_url, level, store_url, scenario.policy_overrides())
                    label = "-".join(filter(None, ("gateway", scenario.name, level, store)))
                    path = write_yaml(run_dir / f"policy-{label}.yaml", policy)
                    proc, url = start_gateway(run_dir, label, path, options.workers)
                    scoped.callback(proc.stop)
                    targets.append(Target(gateway_target(level, store), "gateway", url, proc.pid))
                if litellm is not None and scenario.compare_litellm:
                    targets.append(litellm)
                targets += peers
                _measure_scenario(scenario, targets, tool, options, upstream_url, report)


def _start_litellm(
    run_dir: Path, upstream_url: str, options: Options, report: Report, stack: ExitStack
) -> Target | None:
    models = set().union(*(s.workload.models() for s in options.scenarios if s.compare_litellm))
    try:
        proc, url = start_litellm(run_dir, upstream_url, options.workers, models)
    except LiteLLMUnavailable as exc:
        report.notes.append(f"LiteLLM comparison skipped: {exc}")
        print(f"LiteLLM comparison skipped: {exc}", file=sys.stderr, flush=True)
        return None
    stack.callback(proc.stop)
    report.meta["litellm_version"] = LITELLM_VERSION
    report.notes.append(
        "LiteLLM runs with its defaults except LITELLM_LOG=ERROR; uvicorn still "
        "logs one access line per request, like gateway[info]"
    )
    return Target("litellm", "litellm", url, proc.pid, is_helper_process)


def _start_peers(
    run_dir: Path, upstream_url: str, options: Options, report: Report, stack: ExitStack
) -> list[Target]:
    """The other proxies, started once: each relays every scenario's requests with none of its stages."""
    peers = []
    if "forwarder" in options.peers:
        proc, url = start_forwarder(run_dir, upstream_url)
        stack.callback(proc.stop)
        peers.append(Target("forwarder", "forwarder", url, proc.pid))
        report.notes.append(
            "forwarder: a bare aiohttp proxy (one ClientSession, body and answer relayed, nothing else), "
            "the floor for a Python proxy of this design"
        )
    if "portkey" in options.peers:
        try:
            proc, url = start_portkey(run_dir)
        except PortkeyUnavailable as exc:
            report.notes.append(f"Portkey comparison skipped: {exc}")
            return peers
        stack.callback(proc.stop)
        peers.append(Target("portkey", "portkey", url, proc.pid, headers=routing_headers(upstream_url)))
        report.meta["portkey_version"] = portkey_version()
        report.notes.append("portkey: the Portkey gateway (node, headless, defaults), routed by its headers")
    return peers


def _measure_scenario(
    scenario: Scenario,
    targets: list[Target],
    tool: LoadTool,
    options: Options,
    upstream_url: str,
    report: Report,
) -> None:
    ready = []
    for target in targets:
        problem = probe(target.base_url, target.workload(scenario.workload))
        if problem is None:
            ready.append(target)
        else:
            report.notes.append(f"{scenario.name}: {target.name} skipped, probe failed: {problem}")
            print(report.notes[-1], file=sys.stderr, flush=True)
    for concurrency in options.concurrency or scenario.concurrency:
        runs: dict[str, list[Measurement]] = {target.name: [] for target in ready}
        for round_ in range(options.repeat):  # rounds interleave the targets, so drift hits all alike
            for target in ready:
                if round_ == 0 and options.warmup_s > 0:
                    tool.run(
                        target.base_url, target.workload(scenario.workload), concurrency, options.warmup_s
                    )
                runs[target.name].append(
                    _measure(scenario, target, tool, options, concurrency, upstream_url, report, round_)
                )
        for target in ready:
            report.measurements.append(_median(runs[target.name]))


def _measure(
    scenario: Scenario,
    target: Target,
    tool: LoadTool,
    options: Options,
    concurrency: int,
    upstream_url: str,
    report: Report,
    round_: int,
) -> Measurement:
    label = f"{scenario.name} {target.name} c={concurrency}"
    recording = _recording(options, target, label) if round_ == 0 else None
    before = _upstream_requests(upstream_url)
    tokens_before = _tokens_used(target)
    result = tool.run(target.base_url, target.workload(scenario.workload), concurrency, options.duration_s)
    received = _upstream_requests(upstream_url) - before
    if _every_body_unique(scenario) and received < result.requests - concurrency:
        report.notes.append(
            f"{label}: only {received} of {result.requests} answers reached the upstream: "
            "the figure includes answers not produced by the provider (a cache hit rate, not a miss path)"
        )
        print(report.notes[-1], file=sys.stderr, flush=True)
    tokens_after = _tokens_used(target)
    tokens = None if tokens_before is None or tokens_after is None else tokens_after - tokens_before
    if recording is not None and (summary := recording.finish()) is not None:
        report.profiles[label] = summary
    rss = tuple(worker_rss_mb(target.pid, target.helper)) if target.pid else ()
    print(
        f"[{label}] {result.rps:,.0f} rps, p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, "
        f"{result.errors} errors",
        file=sys.stderr,
        flush=True,
    )
    return Measurement(scenario.name, target.name, target.kind, result, rss, received, tokens_used=tokens)


def _every_body_unique(scenario: Scenario) -> bool:
    """Every request must reach the upstream: each body is new (a fresh run id per run) and nothing
    merges them (batching)."""
    batching = scenario.policy.get("batching", {}).get("enabled", False)
    return not batching and all(UNIQUE in t.body for t in scenario.workload.templates)


def _median(runs: list[Measurement]) -> Measurement:
    """The run with the median throughput (whole, so its percentiles stay consistent), with the RSS after
    the last run and every run's throughput."""
    ranked = sorted(runs, key=lambda m: m.result.rps)
    middle = ranked[(len(ranked) - 1) // 2]
    return replace(middle, rss_mb=runs[-1].rss_mb, rps_runs=tuple(m.result.rps for m in runs))


def _recording(options: Options, target: Target, label: str) -> Recording | None:
    if options.profile_dir is None or target.kind != "gateway" or target.pid is None:
        return None
    options.profile_dir.mkdir(parents=True, exist_ok=True)
    out = options.profile_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".txt")
    return Recording(target.pid, options.duration_s, out)


def _tokens_used(target: Target) -> float | None:
    """The gateway's ``tokens_used_total`` (provider tokens it was charged), summed over its labels."""
    if target.kind != "gateway":
        return None
    with urllib.request.urlopen(target.base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("tokens_used_total{")
    )


def _upstream_requests(upstream_url: str) -> int:
    with urllib.request.urlopen(upstream_url + "/_fake/stats", timeout=5) as response:
        return int(json.load(response)["requests"])
