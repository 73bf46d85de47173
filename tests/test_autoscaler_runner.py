"""The sidecar process: exit statuses, /healthz and /metrics, and a real run stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway.autoscaler import runner
from gateway.autoscaler.actuators import build_actuator
from gateway.autoscaler.controller import Autoscaler
from gateway.autoscaler.leader import LeaderElector, LeaderLock
from gateway.policy import Policy
from gateway.policy.autoscaler import AutoscalerConfig
from gateway.policy.core import StoreConfig
from tests.fakes.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
ENTRY = (
    "import sys; from gateway.policy import load_policy; from gateway.autoscaler.runner import run; "
    "sys.exit(run(load_policy(sys.argv[1])))"
)


@pytest.fixture(autouse=True)
def keep_logging_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` configures structlog for the process; in-process tests must not change it for others."""
    monkeypatch.setattr(runner, "configure", lambda *_: None)


def test_without_redis_it_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.run(Policy()) == 2
    assert "needs Redis: set store.url" in capsys.readouterr().err


def test_an_actuator_that_cannot_be_set_up_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    policy = Policy(
        store=StoreConfig(url="redis://127.0.0.1:1/0"),
        autoscaler={"targets": [{"actuator": {"type": "kubernetes", "kubeconfig": "/nonexistent"}}]},
    )
    assert runner.run(policy) == 2
    assert "kubeconfig /nonexistent" in capsys.readouterr().err


def test_a_disabled_autoscaler_exits_0() -> None:
    assert runner.run(Policy(autoscaler=AutoscalerConfig(enabled=False))) == 0


async def test_healthz_reports_leadership_and_a_stalled_loop(redis_url: str, aiohttp_client: Any) -> None:
    client = aioredis.Redis.from_url(redis_url)
    config = AutoscalerConfig(poll_interval_s=1)
    elector = LeaderElector(LeaderLock(client, "k", 5), 5)
    autoscaler = Autoscaler(config, client, {"agents": build_actuator(config.targets[0])}, elector)
    http: TestClient = await aiohttp_client(runner.create_app(autoscaler, elector))
    await elector.tick()
    response = await http.get("/healthz")
    assert response.status == 200 and (await response.json())["leader"] is True
    autoscaler.last_cycle_at -= 3 + 2 * config.retry.deadline_s + 1
    response = await http.get("/healthz")
    assert response.status == 503 and (await response.json())["status"] == "stalled"
    metrics = await (await http.get("/metrics")).text()
    assert "autoscaler_is_leader 1.0" in metrics
    await client.aclose()


def test_the_sidecar_scales_serves_and_stops_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
store: {{url: "{redis_url}"}}
logging: {{level: info}}
autoscaler:
  listen_host: 127.0.0.1
  listen_port: {port}
  poll_interval_s: 0.1
  cooldown_s: 0
  leader_ttl_s: 2
  targets: [{{name: agents, min_replicas: 1, max_replicas: 5}}]
"""
    )
    seed = redis.Redis.from_url(redis_url)
    for _ in range(150):
        seed.xadd("tasks:stream", {"task": "t"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, str(policy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        # The counter moves after the gauge within a cycle: wait for the last thing the second action does.
        metrics = wait_for(
            proc,
            f"http://127.0.0.1:{port}/metrics",
            'autoscaler_scale_events_total{direction="up",target="agents"} 2.0',
        )
        assert 'autoscaler_desired_replicas{target="agents"} 5.0' in metrics
        assert 'queue_length{stream="tasks:stream"} 150.0' in metrics
        assert 'autoscaler_errors_total{kind="redis"} 0.0' in metrics
        assert 'autoscaler_scale_events_total{direction="down",target="agents"} 0.0' in metrics
        health = json.loads(wait_for(proc, f"http://127.0.0.1:{port}/healthz", '"leader": true'))
        assert health["status"] == "ok"
        assert seed.get("llmgw:autoscaler:leader") is not None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert seed.get("llmgw:autoscaler:leader") is None  # released on the way out
    seed.close()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[0] == "autoscaler.start" and names[-1] == "autoscaler.stop"
    ups = [e for e in events if e["event"] == "autoscaler.decision" and e["acted"]]
    assert [(e["current"], e["desired"], e["reason"]) for e in ups] == [
        (1, 3, "above_high"),
        (3, 5, "above_high"),
    ]


def wait_for(proc: subprocess.Popen[bytes], url: str, needle: str, timeout: float = 10.0) -> str:
    """Poll ``url`` until its body contains ``needle``; return that body. Fails early if ``proc`` exits."""
    deadline, body = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the sidecar exited with {proc.returncode}: {err.decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                body = response.read().decode()
            if needle in body:
                return body
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never contained {needle!r}; last body: {body[:500]}")
