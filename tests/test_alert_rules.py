"""The chart's alert rules run by Prometheus' own rule engine (``promtool test rules``) on series shaped
like a plain scrape config's (``job`` and ``instance`` only, no ServiceMonitor labels): each alert fires
on the condition it names and stays silent otherwise; the hit-rate alert waits for real traffic."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_helpers import alert_rules, by_kind, render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)
PLAIN = 'job="llm-gateway", instance="gateway:8080"'  # what the README's scrape config gives
SIDECAR = 'job="llm-gateway", instance="autoscaler:9091"'
SPRINT = {"id": "sprint-42", "total_tokens": 5_000_000, "agents": 5}
RULES: dict[str, Any] = {
    "metrics": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}}},
    "policy": {"budgets": {"sprints": [SPRINT]}},
}


def rule_groups(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's PrometheusRule as a Prometheus rule file."""
    (rule,) = by_kind(render(values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is required in CI (.ci/run installs the Debian package prometheus)"
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def counter(name: str, labels: str, per_minute: float, minutes: int = 120) -> dict[str, str]:
    """A counter growing by ``per_minute`` each minute (the tests' interval)."""
    return series(name, labels, f"0+{per_minute}x{minutes}")


SEVERITY = {
    "LLMQueueBacklogHigh": "warning",
    "LLMCacheHitRateLow": "warning",
    "LLMSprintBudgetLow": "warning",
    "LLMGatewayErrorRateHigh": "critical",
    "LLMGatewayLatencyP95High": "warning",
    "LLMAutoscalerNoLeader": "critical",
}


def alert(name: str, fires: bool, at: str, **labels: str) -> dict[str, Any]:
    expected = [{"exp_labels": {"severity": SEVERITY[name], "team": "platform", **labels}}] if fires else []
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def case(input_series: list[dict[str, str]], *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": input_series, "alert_rule_test": list(alerts)}


def lookups(hits: float, misses: float) -> list[dict[str, str]]:
    """Cache lookups per minute, as the gateway counts them."""
    return [
        counter("llm_cache_hits_total", f'{PLAIN}, endpoint="chat"', hits),
        counter("llm_cache_misses_total", f'{PLAIN}, endpoint="chat"', misses),
    ]


def cases() -> list[dict[str, Any]]:
    leader = series("autoscaler_is_leader", SIDECAR, "1x120")
    quiet = [leader, series("queue_length", f'{SIDECAR}, stream="tasks:stream"', "5x120")]
    budget = f'{PLAIN}, sprint="sprint-42", agent='
    chat = f'{PLAIN}, endpoint="chat"'
    return [
        # A cold cache under real traffic: 10 % hits at one lookup per second.
        case(
            quiet + lookups(6, 54),
            alert("LLMCacheHitRateLow", False, "10m"),  # pending: not yet 15m
            alert("LLMCacheHitRateLow", True, "60m"),
        ),
        # The same ratio at two lookups a minute (under minLookupsPerSecond, 0.05/s): silence.
        case(quiet + lookups(0.2, 1.8), alert("LLMCacheHitRateLow", False, "90m")),
        # A warm cache: silence.
        case(quiet + lookups(30, 30), alert("LLMCacheHitRateLow", False, "90m")),
        # No traffic at all (and a leader): nothing fires.
        case(quiet, *(alert(name, False, "90m") for name in SEVERITY)),
        # Backlog above 100 for 5 minutes, per stream.
        case(
            [leader, series("queue_length", f'{SIDECAR}, stream="tasks:stream"', "150x30")],
            alert("LLMQueueBacklogHigh", False, "3m"),
            alert("LLMQueueBacklogHigh", True, "10m", stream="tasks:stream"),
        ),
        # Under 10 % of the sprint left (the per-agent series do not count).
        case(
            [
                *quiet,
                series("token_budget_remaining", budget + '"_sprint"', "400000x10"),
                series("token_budget_remaining", budget + '"a1"', "1x10"),
            ],
            alert("LLMSprintBudgetLow", True, "5m", sprint="sprint-42"),
        ),
        case(
            [*quiet, series("token_budget_remaining", budget + '"_sprint"', "600000x10")],
            alert("LLMSprintBudgetLow", False, "5m"),
        ),
        # 10 % of answers are 5xx.
        case(
            [
                *quiet,
                counter("gateway_requests_total", f'{chat}, code="200"', 90, 30),
                counter("gateway_requests_total", f'{chat}, code="502"', 10, 30),
            ],
            alert("LLMGatewayErrorRateHigh", True, "20m"),
        ),
        # P95 latency of about 2 s.
        case(
            [
                *quiet,
                counter("gateway_request_duration_seconds_bucket", f'{chat}, le="0.5"', 1, 30),
                counter("gateway_request_duration_seconds_bucket", f'{chat}, le="2.5"', 100, 30),
                counter("gateway_request_duration_seconds_bucket", f'{chat}, le="+Inf"', 100, 30),
            ],
            alert("LLMGatewayLatencyP95High", True, "20m"),
        ),
        # No sidecar holds the lock, or none reports at all.
        case([series("autoscaler_is_leader", SIDECAR, "0x30")], alert("LLMAutoscalerNoLeader", True, "10m")),
        case([], alert("LLMAutoscalerNoLeader", True, "10m")),
    ]


def write_unit_test(tmp_path: Path, groups: dict[str, Any]) -> Path:
    """A promtool unit test: the rules without annotations (their texts are checked by check rules)."""
    bare = copy.deepcopy(groups)
    for group in bare["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(bare))
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": cases()}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_rules_pass_promtool_check(tmp_path: Path) -> None:
    for values in (RULES, {**RULES, "metrics": {**RULES["metrics"], "serviceMonitor": {"enabled": True}}}):
        path = tmp_path / "rules.yml"
        path.write_text(yaml.safe_dump(rule_groups(values)))
        result = promtool("check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_its_condition_with_a_plain_scrape_config(tmp_path: Path) -> None:
    groups = rule_groups(RULES)
    assert {r["alert"] for r in alert_rules([{"kind": "PrometheusRule", "spec": groups}])} == set(SEVERITY)
    result = promtool("test", "rules", write_unit_test(tmp_path, groups))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_test_catches_a_hit_rate_alert_without_the_traffic_floor(tmp_path: Path) -> None:
    """With minLookupsPerSecond at 0 the quiet-gateway case fires: the floor is what keeps it silent."""
    values = copy.deepcopy(RULES)
    values["alerts"] = {"cacheHitRate": {"enabled": True, "threshold": 0.25, "minLookupsPerSecond": 0}}
    result = promtool("test", "rules", write_unit_test(tmp_path, rule_groups(values)))
    assert result.returncode != 0 and "LLMCacheHitRateLow" in result.stdout + result.stderr


def test_a_selector_scopes_every_expression(tmp_path: Path) -> None:
    values = copy.deepcopy(RULES)
    values["metrics"]["prometheusRule"]["selector"] = 'job="llm-gateway"'
    rules = alert_rules([{"kind": "PrometheusRule", "spec": rule_groups(values)}])
    for rule in rules:
        if "vector(0)" not in rule["expr"] or "autoscaler_is_leader" in rule["expr"]:
            assert '{job="llm-gateway"' in rule["expr"], rule["expr"]
    result = promtool("test", "rules", write_unit_test(tmp_path, rule_groups(values)))
    assert result.returncode == 0, result.stdout + result.stderr  # the plain scrape's job matches
