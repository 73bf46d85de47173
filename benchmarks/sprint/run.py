"""Run the sprint: two fake providers, one gateway with its default policy, the same requests to each."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from gateway.policy import load_policy
from gateway.pricing import PriceBook
from gateway.reporting.report import as_json, load
from gateway.reporting.source import Selection

from ..gateway_policy import PROVIDER, gateway_policy, shipped_models, shipped_section, write_yaml
from ..processes import ManagedProcess, repo_env, start_gateway, wait_started
from . import kpis
from .client import replay
from .workload import DIRECT_MODEL, SprintShape, generate

DESCRIPTION = (
    "12 agents in two teams, ~2,200 requests: Zipf-repeated questions and hot code, CI re-runs, crash "
    "retries, bursts of small tasks; through the gateway (default policy) and direct, same run"
)


def sprint_policy(upstream_url: str, ledger: Path) -> dict[str, Any]:
    """The shipped policy's models, routing, cache and batching, every model served by the fake."""
    overrides: dict[str, Any] = {
        "models": shipped_models(PROVIDER),
        "routing": shipped_section("routing") or {},
        "ledger": {"file": str(ledger), "heartbeat_interval_s": 0},
    }
    return gateway_policy(upstream_url, "warning", "", overrides)


def start_provider(run_dir: Path, name: str, seed: int) -> tuple[ManagedProcess, str]:
    from tests.fakes.redis_server import free_port

    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.sprint.provider", "--port", str(port), "--seed", str(seed)]
    proc = ManagedProcess(name, argv, run_dir / f"{name}.log", repo_env())
    return wait_started(proc, port, "/v1/models")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _tokens_used(base_url: str) -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("tokens_used_total{")
    )


def run_sprint(shape: SprintShape) -> dict[str, Any]:
    requests = generate(shape)
    with tempfile.TemporaryDirectory(prefix="llmgw-sprint-") as tmp:
        run_dir = Path(tmp)
        direct_up, direct_url = start_provider(run_dir, "provider-direct", shape.seed)
        gw_up, gw_up_url = start_provider(run_dir, "provider-gateway", shape.seed)
        ledger = run_dir / "ledger.jsonl"
        policy_path = write_yaml(run_dir / "policy.yaml", sprint_policy(gw_up_url, ledger))
        gateway, gateway_url = start_gateway(run_dir, "gateway-sprint", policy_path, 1)
        try:
            print(f"[sprint] direct: {len(requests)} requests over {shape.duration_s:.0f} s", file=sys.stderr)
            direct_seen = asyncio.run(replay(direct_url, requests, DIRECT_MODEL))
            print("[sprint] through the gateway", file=sys.stderr)
            gateway_seen = asyncio.run(replay(gateway_url, requests))
            tokens_metric = _tokens_used(gateway_url)
            direct_calls = _get(direct_url + "/_sprint/calls")
            gateway_calls = _get(gw_up_url + "/_sprint/calls")
        finally:
            gateway.stop()
            direct_up.stop()
            gw_up.stop()
        policy = load_policy(policy_path)
        _, summary = load(str(ledger), policy, Selection(), show_progress=False)
        reported = as_json(summary)
    prices = PriceBook.from_policy(policy)
    direct = kpis.Side(direct_seen, direct_calls, prices.cost)
    through = kpis.Side(gateway_seen, gateway_calls, prices.cost, reported, tokens_metric)
    return kpis.measure(through, direct)
