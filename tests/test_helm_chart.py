"""The Helm chart (helm/llm-gateway), rendered and linted by Helm's own code (helm-python-sdk): every
object against the Kubernetes schemas, the RBAC, probes, policy, secrets, alerts and dashboard invariants,
and every metric the dashboard and alerts query against a live gateway's and autoscaler's /metrics."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate
import openai
import pytest
import redis
import yaml

from gateway.policy import load_policy
from tests.chart_helpers import (
    CHART,
    FULLNAME,
    NAMESPACE,
    ROOT,
    alert_rules,
    by_kind,
    containers,
    env_of,
    exported_metrics,
    grafana_query_exprs,
    notes,
    one,
    policy_text,
    promql_label_names,
    promql_metric_names,
    render,
)
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.redis_server import free_port
from tests.fakes.upstream import FakeUpstream

KUBE_VERSION = "1.35.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SPRINTS = [
    {"id": "sprint-42", "total_tokens": 5_000_000, "agents": 5},
    {"id": "ops", "total_tokens": 800_000, "agents": ["ops-1", "ops-2"]},
]
TARGETS = [
    {"name": "coders", "deployment": "coder-agents", "streams": ["tasks:stream"], "max_replicas": 20},
    {"name": "testers", "deployment": "qa-agents", "namespace": "qa", "streams": ["qa:stream"]},
    {"name": "shadow", "dryRun": True, "streams": ["shadow:stream"]},
]
MONITORING = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {
        "enabled": True,
        "labels": {"release": "kube-prometheus-stack"},
        "alertLabels": {"team": "platform"},
    },
}
EVERYTHING: dict[str, Any] = {
    "hpa": {"enabled": True, "minReplicas": 3, "maxReplicas": 12, "targetMemoryUtilizationPercentage": 80},
    "pdb": {"minAvailable": 2},
    "metrics": {**MONITORING, "dashboard": {"annotations": {"grafana_folder": "LLM"}}},
    "policy": {"budgets": {"sprints": SPRINTS}},
    "redis": {"host": "redis.data.svc", "password": {"secretName": "redis"}, "tls": {"enabled": True}},
    "autoscaler": {"targets": TARGETS},
    "gateway": {"workers": 2},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "hpa": {"hpa": {"enabled": True}},
    "pdb-min-available": {"pdb": {"minAvailable": "50%"}},
    "monitoring": {"metrics": MONITORING},
    "budgets": {"policy": {"budgets": {"sprints": SPRINTS}}, "metrics": MONITORING},
    "redis-url": {"redis": {"url": "redis://redis.data.svc:6379/2"}},
    "redis-url-secret": {"redis": {"urlSecret": {"name": "redis-conn", "key": "url"}}},
    "redis-password": {"redis": {"password": {"secretName": "redis"}, "username": "gateway"}},
    "autoscaler-off": {"autoscaler": {"enabled": False}, "metrics": MONITORING},
    "targets": {"autoscaler": {"targets": TARGETS}},
    "everything": EVERYTHING,
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in VARIANTS.items()}


# --- Helm's own checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "everything", "autoscaler-off"])
def test_the_chart_lints_without_warnings(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version="v1.35.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"host": "", "url": ""}}, "redis"),
        ({"policy": {"autoscaler": {"enabled": True}}}, "autoscaler"),
        ({"autoscaler": {"targets": [{"name": "x", "streams": ["s"]}]}}, "deployment"),
        ({"alerts": {"queueLength": {"threshold": "high"}}}, "threshold"),
        ({"replicas": 3}, "replicas"),
        ({"redis": {"url": "http://redis:6379"}}, "url"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
    ],
)
def test_the_values_schema_rejects_mistakes(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.validate_schema(values)
    assert message in str(caught.value)


def test_the_schema_accepts_the_defaults_and_every_variant() -> None:
    with helm.Chart.load(CHART) as chart:
        assert chart.schema is not None
        for values in VARIANTS.values():
            chart.validate_schema(values)


def test_a_redis_without_any_address_fails_the_render_with_a_message() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"/redis/host"):
        chart.render({"redis": {"host": ""}}, name="x", namespace="y")


# --- Kubernetes schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_is_valid_kubernetes(variant: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    for obj in rendered[variant]:
        if obj["kind"] in CRD_KINDS:
            continue  # no CRD schemas in kubernetes-validate: checked field by field below
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        assert obj["metadata"]["namespace"], obj["metadata"]["name"]


def test_the_default_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = sorted(o["kind"] for o in rendered["default"])
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Pod",  # the `helm test` hook
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    everything = {o["kind"] for o in rendered["everything"]}
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"} <= everything


def test_the_service_monitor_selects_the_service_and_scrapes_both_processes(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["everything"]
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    ports = {p["name"] for p in service["spec"]["ports"]}
    endpoints = monitor["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == ["http", "autoscaler"]
    for endpoint in endpoints:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    off = one(rendered["autoscaler-off"], "ServiceMonitor")
    assert [e["port"] for e in off["spec"]["endpoints"]] == ["http"]


def test_the_prometheus_rule_is_well_formed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rule = one(rendered["everything"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert group["rules"]
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alert["alert"])
            assert isinstance(alert["expr"], str) and balanced(alert["expr"]), alert["expr"]
            assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", alert["for"])
            assert alert["labels"]["severity"] in {"critical", "warning", "info"}
            assert alert["labels"]["team"] == "platform"
            assert all(isinstance(v, str) for v in alert["annotations"].values())
            assert {"summary", "description"} <= alert["annotations"].keys()


# --- RBAC ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rbac_grants_only_get_and_patch_on_the_targets_scale(
    variant: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered[variant]
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    values = VARIANTS[variant]
    autoscaler = values.get("autoscaler", {})
    expected: dict[str, set[str]] = {}
    if autoscaler.get("enabled", True):
        for target in autoscaler.get("targets", []):
            if not target.get("dryRun"):
                namespace = target.get("namespace") or NAMESPACE
                expected.setdefault(namespace, set()).add(target["deployment"])
    roles = by_kind(objects, "Role")
    granted: dict[str, set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["apps"]
            assert rule["resources"] == ["deployments/scale"]
            assert sorted(rule["verbs"]) == ["get", "patch"]
            assert rule["resourceNames"] and "*" not in rule["resourceNames"]
            granted.setdefault(role["metadata"]["namespace"], set()).update(rule["resourceNames"])
    assert granted == expected
    service_account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = by_kind(objects, "RoleBinding")
    assert len(bindings) == len(roles)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"{FULLNAME}-autoscaler",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}
        ]


def test_the_policy_targets_are_exactly_the_granted_deployments(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    policy = yaml.safe_load(policy_text(rendered["targets"]))
    actuators = {t["name"]: t["actuator"] for t in policy["autoscaler"]["targets"]}
    assert actuators == {
        "coders": {
            "type": "kubernetes",
            "resource": "deployment",
            "name": "coder-agents",
            "namespace": NAMESPACE,
        },
        "testers": {"type": "kubernetes", "resource": "deployment", "name": "qa-agents", "namespace": "qa"},
        "shadow": {"type": "dry-run"},
    }
    granted = {
        (r["metadata"]["namespace"], n)
        for r in by_kind(rendered["targets"], "Role")
        for rule in r["rules"]
        for n in rule["resourceNames"]
    }
    wanted = {(a["namespace"], a["name"]) for a in actuators.values() if a["type"] == "kubernetes"}
    assert granted == wanted


# --- Pod -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_containers_are_locked_down_with_probes_and_resources(
    variant: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    deployment = one(rendered[variant], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    by_name = containers(rendered[variant])
    assert set(by_name) == ({"gateway"} if variant == "autoscaler-off" else {"gateway", "autoscaler"})
    for container in by_name.values():
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"requests", "limits"} <= container["resources"].keys()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        kinds = ("startupProbe", "livenessProbe", "readinessProbe")
        for kind in kinds if container["name"] == "gateway" else kinds[1:]:
            probe = container[kind]["httpGet"]
            assert probe["port"] in ports and probe["path"].startswith("/")
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/etc/llm-gateway"]["readOnly"] is True and "/tmp" in mounts
        token_mounted = "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
        assert token_mounted == (container["name"] == "autoscaler")  # only the sidecar reaches the API
    gateway = by_name["gateway"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["args"][0] == "serve" and "--port=8080" in gateway["args"]
    assert gateway["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert (
        pod["terminationGracePeriodSeconds"]
        > yaml.safe_load(policy_text(rendered[variant]))["server"]["drain_timeout_s"]
    )
    if "autoscaler" in by_name:
        sidecar = by_name["autoscaler"]
        assert sidecar["args"][0] == "autoscale"
        listen_port = yaml.safe_load(policy_text(rendered[variant]))["autoscaler"]["listen_port"]
        assert sidecar["ports"][0]["containerPort"] == listen_port == 9091
        assert "OPENAI_API_KEY" not in env_of(sidecar)  # the sidecar never needs the provider key


def test_replicas_follow_values_unless_the_hpa_owns_them(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert one(rendered["default"], "Deployment")["spec"]["replicas"] == 2
    assert "replicas" not in one(rendered["hpa"], "Deployment")["spec"]
    hpa = one(rendered["everything"], "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}
    assert one(rendered["default"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(rendered["everything"], "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": one(rendered["everything"], "Deployment")["spec"]["selector"],
    }


def test_the_service_exposes_the_gateway_and_the_sidecar(rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = one(rendered["default"], "Service")
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8080, "http"),
        ("autoscaler", 9091, "autoscaler"),
    ]
    pod_labels = one(rendered["default"], "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


# --- Policy, secrets, Redis ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_mounted_policy_passes_the_gateways_own_validation(
    variant: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(rendered[variant]))
    env = {"REDIS_URL": "redis://redis:6379/0", "OPENAI_API_KEY": "sk-x", "GATEWAY_ADMIN_KEY": "admin"}
    policy = load_policy(path, env)
    assert policy.store.url == "redis://redis:6379/0"  # store.url reads REDIS_URL
    assert policy.server.admin_key == "admin" and policy.providers["openai"].api_key == "sk-x"
    assert policy.autoscaler.enabled is (variant != "autoscaler-off")
    if variant == "everything":
        assert [s.id for s in policy.budgets.sprints] == ["sprint-42", "ops"]
        assert policy.autoscaler.targets[0].max_replicas == 20


def test_the_charts_policy_is_the_shipped_default_policy(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """values.yaml's ``policy`` mirrors policies/default.yaml (what the image ships and ``serve`` reads), so
    a Helm install behaves like the documented defaults; keep the two in step."""
    env = {"REDIS_URL": "redis://redis:6379/0", "OPENAI_API_KEY": "sk-x"}
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(rendered["default"]))
    chart = load_policy(path, env).model_dump(exclude={"autoscaler"})
    shipped = load_policy(ROOT / "policies" / "default.yaml", env).model_dump(exclude={"autoscaler"})
    assert chart == shipped


def test_a_policy_change_rolls_the_pods() -> None:
    before = one(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
    after = one(render({"policy": {"logging": {"level": "debug"}}}), "Deployment")
    assert after["spec"]["template"]["metadata"]["annotations"]["checksum/policy"] != before


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("default", "redis://redis-master:6379/0"),
        ("redis-url", "redis://redis.data.svc:6379/2"),
        ("redis-password", "redis://redis-master:6379/0"),
        ("everything", "rediss://redis.data.svc:6379/0"),
    ],
)
def test_redis_url_is_built_from_values_and_the_password_passed_beside_it(
    variant: str, expected: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """More modes, and the rendered policy read back by the store's own parser: tests/test_helm_redis.py."""
    for container in containers(rendered[variant]).values():
        env = env_of(container)
        assert env["REDIS_URL"]["value"] == expected
        if variant in {"redis-password", "everything"}:
            assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "redis",
                "key": "redis-password",
            }
        else:
            assert "REDIS_PASSWORD" not in env
        assert env.get("REDIS_USERNAME", {}).get("value") == (
            "gateway" if variant == "redis-password" else None
        )


def test_credentials_come_only_from_secret_references(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = env_of(containers(rendered["default"])["gateway"])
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-gateway-keys",
        "key": "openai-api-key",
        "optional": False,
    }
    assert env["GATEWAY_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["GATEWAY_CONFIG"]["value"] == "/etc/llm-gateway/policy.yaml"
    assert env["UPSTREAM_BASE_URL"]["value"] == "https://api.openai.com/v1"
    assert not by_kind(rendered["everything"], "Secret")  # the chart never holds a credential itself
    without = render({"secrets": {"providerKey": {"name": "", "key": "k"}}})
    assert "OPENAI_API_KEY" not in env_of(containers(without)["gateway"])


def test_notes_tell_agents_where_to_point() -> None:
    text = notes()
    assert f"OPENAI_BASE_URL=http://{FULLNAME}.{NAMESPACE}.svc:8080/v1" in text
    assert "dry-run" in text and "autoscaler.targets" in text  # no target yet: nothing is scaled
    listed = notes({"autoscaler": {"targets": TARGETS}})
    assert "deployment agents/coder-agents on tasks:stream" in listed and "dry-run" in listed


# --- Alerts ----------------------------------------------------------------------------------------


def comparison(expr: str) -> tuple[str, float]:
    """The final comparison of an alert expression: operator and threshold."""
    match = re.search(r"([<>]=?)\s*([0-9.e+-]+)\s*$", expr.strip())
    assert match, expr
    return match.group(1), float(match.group(2))


def test_the_seeds_alerts_with_default_thresholds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rules = {r["alert"]: r for r in alert_rules(rendered["everything"])}
    assert set(rules) == {
        "LLMQueueBacklogHigh",
        "LLMCacheHitRateLow",
        "LLMSprintBudgetLow",
        "LLMGatewayErrorRateHigh",
        "LLMGatewayLatencyP95High",
        "LLMAutoscalerNoLeader",
    }
    assert comparison(rules["LLMQueueBacklogHigh"]["expr"]) == (">", 100)
    assert "queue_length{" in rules["LLMQueueBacklogHigh"]["expr"]
    assert comparison(rules["LLMCacheHitRateLow"]["expr"]) == ("<", 0.25)
    assert comparison(rules["LLMGatewayErrorRateHigh"]["expr"]) == (">", 0.05)
    assert 'code=~"5.."' in rules["LLMGatewayErrorRateHigh"]["expr"]
    assert comparison(rules["LLMGatewayLatencyP95High"]["expr"]) == (">", 0.5)
    assert "histogram_quantile(0.95," in rules["LLMGatewayLatencyP95High"]["expr"]
    assert comparison(rules["LLMAutoscalerNoLeader"]["expr"]) == ("<", 1)
    budget = [r for r in alert_rules(rendered["everything"]) if r["alert"] == "LLMSprintBudgetLow"]
    assert len(budget) == len(SPRINTS)  # one per sprint declared in the policy
    for rule, sprint in zip(budget, SPRINTS, strict=True):
        assert f'sprint="{sprint["id"]}"' in rule["expr"] and 'agent="_sprint"' in rule["expr"]
        assert f"/ {sprint['total_tokens']} < 0.1" in rule["expr"]
    selector = f'namespace="{NAMESPACE}", job="{FULLNAME}"'
    for rule in alert_rules(rendered["everything"]):
        for body in re.findall(r"\{([^}]*)\}", rule["expr"]):
            assert body.startswith(selector), rule["expr"]  # scoped to this release's series


def test_alert_thresholds_and_switches_follow_values() -> None:
    values = copy.deepcopy(VARIANTS["budgets"])
    values["alerts"] = {
        "queueLength": {"enabled": True, "threshold": 250, "for": "2m", "severity": "critical"},
        "cacheHitRate": {"enabled": True, "threshold": 0.4, "window": "1h"},
        "budgetRemaining": {"enabled": True, "threshold": 0.05},
        "errorRate5xx": {"enabled": True, "threshold": 0.01, "window": "10m"},
        "latencyP95": {"enabled": True, "threshold": 2.5},
        "autoscalerNoLeader": {"enabled": False},
    }
    rules = alert_rules(render(values))
    by_name = {r["alert"]: r for r in rules}
    assert "LLMAutoscalerNoLeader" not in by_name
    assert comparison(by_name["LLMQueueBacklogHigh"]["expr"]) == (">", 250)
    assert by_name["LLMQueueBacklogHigh"]["for"] == "2m"
    assert by_name["LLMQueueBacklogHigh"]["labels"]["severity"] == "critical"
    assert comparison(by_name["LLMCacheHitRateLow"]["expr"]) == ("<", 0.4)
    assert "[1h]" in by_name["LLMCacheHitRateLow"]["expr"]
    assert comparison(by_name["LLMGatewayErrorRateHigh"]["expr"]) == (">", 0.01)
    assert "[10m]" in by_name["LLMGatewayErrorRateHigh"]["expr"]
    assert comparison(by_name["LLMGatewayLatencyP95High"]["expr"]) == (">", 2.5)
    for rule in (r for r in rules if r["alert"] == "LLMSprintBudgetLow"):
        assert comparison(rule["expr"])[1] == 0.05
    off = alert_rules(render({**VARIANTS["budgets"], "alerts": {"budgetRemaining": {"enabled": False}}}))
    assert "LLMSprintBudgetLow" not in {r["alert"] for r in off}


def test_autoscaler_alerts_go_with_the_autoscaler(rendered: dict[str, list[dict[str, Any]]]) -> None:
    names = {r["alert"] for r in alert_rules(rendered["autoscaler-off"])}
    assert "LLMAutoscalerNoLeader" not in names and "LLMQueueBacklogHigh" not in names
    assert "LLMCacheHitRateLow" in names


# --- Dashboard -------------------------------------------------------------------------------------


def dashboard(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap", f"{FULLNAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["llm-gateway.json"])


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_the_dashboard_covers_the_seeds_monitoring_table(rendered: dict[str, list[dict[str, Any]]]) -> None:
    board = dashboard(rendered["default"])
    assert board == json.loads((CHART / "dashboards" / "llm-gateway.json").read_text())
    titles = " | ".join(p["title"].lower() for p in panels(board))
    for wanted in (
        "queue length",
        "cache hit rate",
        "tokens used this sprint",
        "tokens used per agent",
        "average",
        "p95",
        "cost savings %",
        "desired vs current",
        "budget remaining",
    ):
        assert wanted in titles, wanted
    queries = " ".join(grafana_query_exprs(board))
    for metric in (
        "queue_length",
        "llm_cache_hits_total",
        "tokens_used_total",
        "token_budget_remaining",
        "gateway_request_duration_seconds_bucket",
        "autoscaler_desired_replicas",
        "autoscaler_current_replicas",
        "llm_cache_tokens_saved_total",
    ):
        assert metric in queries, metric
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] == "llm-gateway"
    (burn,) = [p for p in panels(board) if p["title"] == "Budget burn-down per sprint"]
    exprs = [t["expr"] for t in burn["targets"]]
    assert "token_budget_used" in exprs[0] and 'agent="_sprint"' in exprs[0]
    assert [e.split('kind="')[1][:5] for e in exprs[1:]] == ["alert", "block"]
    assert not any("increase(" in e or "rate(" in e for e in exprs), "since the sprint's start, not a window"
    for panel in panels(board):
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        assert all(balanced(t["expr"]) for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    annotated = one(rendered["everything"], "ConfigMap", f"{FULLNAME}-dashboard")
    assert annotated["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert not [
        o
        for o in render({"metrics": {"dashboard": {"enabled": False}}})
        if "dashboard" in o["metadata"]["name"]
    ]


# --- Against the live processes --------------------------------------------------------------------


def test_every_queried_metric_is_exported_and_every_probe_answers(
    fake_upstream: FakeUpstream, redis_url: str, tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Run a real gateway and a real autoscaler (the two containers' commands), use the features whose
    series appear only after use, scrape both, and check every dashboard and alert query against them."""
    gateway_port, autoscaler_port = free_port(), free_port()
    policy = base_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        auth={"keys": [{"key": GATEWAY_KEY, "agent": "agent-1"}, {"key": "gw-small", "agent": "small"}]},
        cache={"enabled": True},
        routing={"aliases": ["auto"]},
        budgets={
            "sprints": [
                {
                    "id": "s1",
                    "total_tokens": 1_000_000,
                    "agents": ["agent-1", "small"],
                    "per_agent": {"small": 1},
                }
            ]
        },
        logging={"level": "warning"},
        autoscaler={
            "listen_host": "127.0.0.1",
            "listen_port": autoscaler_port,
            "poll_interval_s": 0.1,
            "leader_ttl_s": 2,
            "targets": [{"name": "agents", "actuator": {"type": "dry-run"}}],
        },
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    seed = redis.Redis.from_url(redis_url)
    for _ in range(3):
        seed.xadd("tasks:stream", {"task": "t"})
    seed.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gateway"]
    processes = [
        subprocess.Popen(
            [*command, "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(gateway_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ),
        subprocess.Popen(
            [*command, "autoscale", "--config", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ),
    ]
    gateway, autoscaler = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{autoscaler_port}"
    try:
        wait_for(f"{gateway}/readyz", "ready", processes)
        with openai.OpenAI(base_url=gateway + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
            for _ in range(2):  # a miss, then a hit
                client.chat.completions.create(
                    model="auto",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"X-Task-Type": "refactor", "X-Sprint": "s1"},
                )
        small = openai.OpenAI(base_url=gateway + "/v1", api_key="gw-small", max_retries=0)
        with small, pytest.raises(openai.APIStatusError):  # over its 1-token budget: counted as refused
            small.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        gateway_text = httpx.get(f"{gateway}/metrics").text
        autoscaler_text = wait_for(
            f"{autoscaler}/metrics", 'autoscaler_desired_replicas{target="agents"}', processes
        )
        # The probes of the rendered containers answer on the real processes.
        live = {"gateway": gateway, "autoscaler": autoscaler}
        for name, container in containers(rendered["default"]).items():
            for kind in ("livenessProbe", "readinessProbe"):
                response = httpx.get(live[name] + container[kind]["httpGet"]["path"])
                assert response.status_code == 200, (name, kind, response.text)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    for text in (gateway_text, autoscaler_text):  # no _created series from either process
        assert not [line for line in text.splitlines() if "_created" in line.split("{")[0]]
    exported = {
        "gateway": exported_metrics(gateway_text),
        "autoscaler": exported_metrics(autoscaler_text),
    }
    assert (
        "queue_length" not in exported["gateway"] and "gateway_requests_total" not in exported["autoscaler"]
    )
    assert exported["gateway"]["token_budget_remaining"] >= {"sprint", "agent"}
    labels_of = {**exported["autoscaler"], **exported["gateway"]}
    queries = [("dashboard", e) for e in grafana_query_exprs(dashboard(rendered["default"]))]
    queries += [("alert " + r["alert"], r["expr"]) for r in alert_rules(rendered["everything"])]
    assert len(queries) > 20
    for where, expr in queries:
        names = promql_metric_names(expr)
        assert names, (where, expr)
        missing = names - labels_of.keys()
        assert not missing, f"{where} queries {sorted(missing)}, which neither process exports: {expr}"
        known = set().union(*(labels_of[n] for n in names)) | {"namespace", "job", "le"}
        unknown = promql_label_names(expr) - known
        assert not unknown, f"{where} uses labels {sorted(unknown)} that {sorted(names)} do not carry"


def wait_for(url: str, text: str, processes: list[subprocess.Popen[bytes]], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"exited {process.returncode}: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            body = httpx.get(url, timeout=2).text
            if text in body:
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never showed {text!r}")


def balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in re.sub(r'"(?:\\.|[^"\\])*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_the_chart_runs_the_projects_own_version() -> None:
    with helm.Chart.load(CHART) as chart:
        app_version = chart.metadata["appVersion"]
    assert app_version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert containers(render())["gateway"]["image"] == f"llm-gateway:{app_version}"
