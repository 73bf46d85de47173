"""compose.yaml (docker compose, no engine here): valid against the Compose specification's JSON schema
(vendored, tests/schemas/README.md), and the stack it describes holds together: the gateway on Redis with
AOF, the autoscaler in dry-run, Prometheus scraping both with the chart's alert rules, Grafana with the
chart's dashboard, and the fake upstream behind a profile, run here for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from gateway.policy import load_policy
from tests.chart_helpers import ROOT, SCHEMAS
from tests.fakes.redis_server import free_port

COMPOSE = ROOT / "compose.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and << merges resolved, as compose does


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((SCHEMAS / "compose-spec.json").read_text()))


def test_compose_yaml_follows_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict: a misspelt key or a wrong type is caught.
    for broken in (
        {**compose, "service": {}},
        {
            **compose,
            "services": {**compose["services"], "redis": {**compose["services"]["redis"], "port": [1]}},
        },
        {**compose, "services": {"gateway": {**compose["services"]["gateway"], "depends_on": "redis"}}},
    ):
        assert not validator.is_valid(broken)


def test_the_stack_has_every_piece(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"gateway", "autoscaler", "redis", "prometheus", "grafana", "fake-upstream"}
    assert [name for name, s in services.items() if s.get("profiles")] == ["fake-upstream"]
    assert services["fake-upstream"]["profiles"] == ["fake"]  # started only with --profile fake
    for name in ("gateway", "autoscaler", "fake-upstream"):
        assert services[name]["build"]["context"] == "." and services[name]["image"] == "llm-gateway:local"
    assert services["gateway"]["command"] == ["serve"] and services["autoscaler"]["command"] == ["autoscale"]
    assert services["gateway"]["ports"] == ["8080:8080"]
    for name in ("gateway", "autoscaler"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]


def test_redis_keeps_an_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert (
        pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec" and pairs["--dir"] == "/data"
    )
    volume, target = redis["volumes"][0].split(":")
    assert target == "/data" and volume in compose["volumes"]  # a named volume survives `compose down`


def test_the_gateway_gets_what_the_shipped_policy_reads(compose: dict[str, Any], tmp_path: Path) -> None:
    env = compose["services"]["gateway"]["environment"]
    assert {"UPSTREAM_BASE_URL", "OPENAI_API_KEY", "GATEWAY_ADMIN_KEY", "REDIS_URL"} <= env.keys()
    assert env["UPSTREAM_BASE_URL"] == "${UPSTREAM_BASE_URL:-https://api.openai.com/v1}"
    assert env["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"  # the key comes from the caller's environment
    shipped = load_policy(ROOT / "policies" / "default.yaml", {"REDIS_URL": env["REDIS_URL"]})
    assert shipped.store.url == "redis://redis:6379/0"


def test_the_autoscaler_only_logs_its_decisions(compose: dict[str, Any]) -> None:
    """The image ships policies/default.yaml; with it every autoscaler target is dry-run."""
    autoscaler = compose["services"]["autoscaler"]
    assert autoscaler["environment"]["LLMGW_HEALTHCHECK_URL"] == "http://127.0.0.1:9091/healthz"
    policy = load_policy(ROOT / "policies" / "default.yaml", {"REDIS_URL": "redis://redis:6379/0"})
    assert policy.autoscaler.enabled and policy.autoscaler.listen_port == 9091
    assert policy.autoscaler.targets and {t.actuator.type for t in policy.autoscaler.targets} == {"dry-run"}
    assert "/var/run/docker.sock" not in json.dumps(autoscaler)  # nothing it could scale with


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's ./relative bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name} mounts {source} at {target}, which does not exist"


def test_prometheus_scrapes_both_processes_with_the_charts_rules(compose: dict[str, Any]) -> None:
    mounts = bind_mounts(compose["services"]["prometheus"])
    config_dir = mounts["/etc/prometheus"]
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "llm-gateway"
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    assert targets == {"gateway:8080", "autoscaler:9091"}  # service names and the ports they listen on
    assert all(static["labels"]["namespace"] for static in job["static_configs"])  # the dashboard's selector
    assert config["rule_files"] == ["rules.yml"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "helm" / "generate.py"), "compose-rules", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout  # the same alerts as the chart's PrometheusRule


@needs_promtool
def test_promtool_accepts_the_prometheus_config_and_rules(compose: dict[str, Any]) -> None:
    assert PROMTOOL, "promtool is required in CI"
    config_dir = bind_mounts(compose["services"]["prometheus"])["/etc/prometheus"]
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config_dir / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((config_dir / "rules.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert count >= 5 and f"SUCCESS: {count} rules found" in result.stdout  # the rules were loaded


def test_grafana_loads_the_charts_dashboard_from_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (
        source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    )
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "llm-gateway.yml").read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards == ROOT / "helm" / "llm-gateway" / "dashboards"  # the chart's own, not a copy
    board = json.loads((dashboards / "llm-gateway.json").read_text())
    assert board["uid"] == "llm-gateway"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]


def test_the_fake_upstream_service_runs_and_answers(compose: dict[str, Any]) -> None:
    """Its entrypoint and command, run as they are (only the listen address moved to loopback)."""
    service = compose["services"]["fake-upstream"]
    command = [*service["entrypoint"], *service["command"]]
    assert command[0] == "python"
    port = free_port()
    args = [a.replace("0.0.0.0", "127.0.0.1").replace("9000", str(port)) for a in command[1:]]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounted[service["working_dir"] + "/tests"] == "./tests"  # the fakes come from the checkout
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = httpx.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                )
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        health = service["healthcheck"]["test"]
        probe = [sys.executable, *[a.replace("9000", str(port)) for a in health[2:]]]
        assert health[:2] == ["CMD", "python"] and subprocess.run(probe, timeout=10).returncode == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
