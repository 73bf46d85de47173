"""The chart's optional objects and pod options (helm/llm-gateway): KEDA instead of the sidecar, Ingress,
Gateway API HTTPRoute, NetworkPolicy, the single-node Redis, the `helm test` pod, startup and preStop,
topology spread, extra env/volumes/sidecars. Each is rendered by Helm's own code, linted, and validated
against the Kubernetes schemas or, for CRDs, against the vendored CRD schema (tests/schemas)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.policy import load_policy
from tests.chart_helpers import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    by_kind,
    containers,
    crd_validator,
    env_of,
    one,
    policy_text,
    render,
)
from tests.fakes.redis_server import free_port

KUBE_VERSION = "1.35.0"
SCALED_OBJECT = crd_validator("keda-scaledobject-v1alpha1.json")
TRIGGER_AUTHENTICATION = crd_validator("keda-triggerauthentication-v1alpha1.json")
HTTP_ROUTE = crd_validator("gateway-api-httproute-v1.json")
CRD = {
    "ScaledObject": SCALED_OBJECT,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION,
    "HTTPRoute": HTTP_ROUTE,
}
TARGETS = [
    {"name": "coders", "deployment": "coder-agents", "streams": ["tasks:stream", "urgent:stream"]},
    {"name": "qa", "deployment": "qa-agents", "namespace": "qa", "streams": ["qa:stream"], "group": "qa"},
    {
        "name": "reviewers",
        "deployment": "reviewers",
        "streams": ["review:stream"],
        "group": "rev",
        "signal": "pending",
        "queue_high": 40,
        "min_replicas": 0,
        "max_replicas": 4,
    },
]
KEDA = {
    "autoscaler": {
        "mode": "keda",
        "targets": TARGETS,
        "keda": {"auth": {"secretName": "redis", "passwordKey": "redis-password"}},
    },
    "redis": {"host": "redis.data.svc", "db": 2, "password": {"secretName": "redis"}},
}
NETWORK = {
    "networkPolicy": {
        "enabled": True,
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agents"}}}],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "egress": [{"ports": [{"port": 6379, "protocol": "TCP"}]}, {"ports": [{"port": 443}]}],
    }
}
EXTRAS = {
    "gateway": {
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "envFrom": [
            {"secretRef": {"name": "more-keys"}},
            {"configMapRef": {"name": "tuning", "optional": True}},
        ],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True}],
    },
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
    "extraContainers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.0"}],
}
VARIANTS: dict[str, dict[str, Any]] = {
    "keda": KEDA,
    "keda-no-auth": {"autoscaler": {"mode": "keda", "targets": TARGETS[:1]}},
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"},
            "hosts": [{"host": "llm.example.com"}, {"host": "api.example.com", "paths": [{"path": "/v1"}]}],
            "tls": [{"hosts": ["llm.example.com"], "secretName": "llm-tls"}],
        }
    },
    "httproute": {
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
            "hostnames": ["llm.example.com"],
            "timeouts": {"request": "600s", "backendRequest": "600s"},
        }
    },
    "networkpolicy": NETWORK,
    "networkpolicy-open": {"networkPolicy": {"enabled": True}, "redisServer": {"enabled": True}},
    "redis-server": {"redisServer": {"enabled": True}, "redis": {"password": {"secretName": "redis-auth"}}},
    "extras": EXTRAS,
    "spread-custom": {
        "topologySpreadConstraints": [
            {
                "maxSkew": 2,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "llm-gateway"}},
            }
        ]
    },
    "no-prestop-no-spread": {"gateway": {"preStopSleepSeconds": 0}, "topologySpread": {"enabled": False}},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in VARIANTS.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_option_lints_and_is_valid_kubernetes(
    variant: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version="v1.35.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []
    for obj in rendered[variant]:
        if obj["kind"] in CRD:
            CRD[obj["kind"]](obj)
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        assert obj["metadata"]["namespace"], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"autoscaler": {"mode": "hpa"}}, "mode"),
        ({"autoscaler": {"keda": {"triggerType": "redis"}}}, "triggerType"),
        ({"autoscaler": {"keda": {"address": "redis://redis:6379"}}}, "address"),
        ({"httpRoute": {"enabled": True}}, "parentRefs"),
        ({"ingress": {"enabled": True}}, "hosts"),
        ({"ingress": {"enabled": True, "hosts": [{"host": "x", "paths": [{"path": "v1"}]}]}}, "path"),
        ({"networkPolicy": {"enabled": True, "to": []}}, "to"),
        ({"redisServer": {"enabled": True, "persistence": {"size": "lots"}}}, "size"),
        ({"gateway": {"envFrom": [{"secretRef": {}}]}}, "name"),
        ({"extraContainers": [{"name": "gateway", "image": "x"}]}, "name"),
        ({"extraVolumes": [{"name": "v"}]}, "extraVolumes"),
        ({"topologySpread": {"whenUnsatisfiable": "Never"}}, "whenUnsatisfiable"),
        ({"metrics": {"prometheusRule": {"selector": "job=llm-gateway"}}}, "selector"),
        ({"alerts": {"cacheHitRate": {"minLookupsPerSecond": -1}}}, "minLookupsPerSecond"),
        ({"gateway": {"preStopSleepSeconds": -1}}, "preStopSleepSeconds"),
    ],
)
def test_the_schema_rejects_mistakes_in_the_new_values(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.validate_schema(values)
    assert message in str(caught.value)


# --- Autoscaling: the sidecar or KEDA, never both --------------------------------------------------


def test_without_targets_the_sidecar_only_logs_and_gets_no_kubernetes_access(tmp_path: Path) -> None:
    objects = render()
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
    assert "autoscaler" in containers(objects)
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(objects))
    policy = load_policy(path, {"REDIS_URL": "redis://r:6379/0"})
    assert policy.autoscaler.enabled
    assert [(t.name, t.streams, t.actuator.type) for t in policy.autoscaler.targets] == [
        ("agents", ["tasks:stream"], "dry-run")
    ]


def test_keda_mode_renders_scaled_objects_and_no_sidecar(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    objects = rendered["keda"]
    assert set(containers(objects)) == {"gateway"}
    assert not by_kind(objects, "Role")  # KEDA's operator scales, with its own rights
    assert [p["name"] for p in one(objects, "Service")["spec"]["ports"]] == ["http"]
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(objects))
    assert load_policy(path, {"REDIS_URL": "redis://r:6379/0"}).autoscaler.enabled is False
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in by_kind(objects, "ScaledObject")}
    assert set(scaled) == {"coder-agents", "qa-agents", "reviewers"}
    for obj in scaled.values():
        assert obj["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": obj["spec"]["scaleTargetRef"]["name"],
        }
    coders, qa, reviewers = scaled["coder-agents"], scaled["qa-agents"], scaled["reviewers"]
    assert coders["metadata"]["namespace"] == NAMESPACE and qa["metadata"]["namespace"] == "qa"
    assert (coders["spec"]["minReplicaCount"], coders["spec"]["maxReplicaCount"]) == (1, 10)
    assert (reviewers["spec"]["minReplicaCount"], reviewers["spec"]["maxReplicaCount"]) == (0, 4)
    assert [t["metadata"]["stream"] for t in coders["spec"]["triggers"]] == ["tasks:stream", "urgent:stream"]
    for trigger in coders["spec"]["triggers"]:
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"] == {
            "address": "redis.data.svc:6379",
            "stream": trigger["metadata"]["stream"],
            "streamLength": "100",  # xlen without a group; one replica per queue_high tasks
            "databaseIndex": "2",
            "enableTLS": "false",
        }
        assert trigger["authenticationRef"] == {"name": f"{FULLNAME}-keda"}
    qa_trigger = qa["spec"]["triggers"][0]["metadata"]
    assert qa_trigger["consumerGroup"] == "qa" and qa_trigger["lagCount"] == "100"  # auto with a group
    rev_trigger = reviewers["spec"]["triggers"][0]["metadata"]
    assert rev_trigger["pendingEntriesCount"] == "40" and "lagCount" not in rev_trigger
    auths = {o["metadata"]["namespace"]: o for o in by_kind(objects, "TriggerAuthentication")}
    assert set(auths) == {NAMESPACE, "qa"}  # one beside each ScaledObject that uses it
    for auth in auths.values():
        assert auth["apiVersion"] == "keda.sh/v1alpha1"
        assert auth["metadata"]["name"] == f"{FULLNAME}-keda"
        assert auth["spec"] == {
            "secretTargetRef": [{"parameter": "password", "name": "redis", "key": "redis-password"}]
        }
    no_auth = by_kind(rendered["keda-no-auth"], "ScaledObject")[0]["spec"]["triggers"][0]
    assert "authenticationRef" not in no_auth and not by_kind(
        rendered["keda-no-auth"], "TriggerAuthentication"
    )
    sidecar = render({"autoscaler": {"targets": TARGETS}})
    assert not by_kind(sidecar, "ScaledObject") and "autoscaler" in containers(sidecar)


def test_keda_scaled_objects_fail_the_crd_schema_when_broken(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The vendored CRD schema is strict: a typo or a missing field is caught, as the API server would."""
    good = by_kind(rendered["keda"], "ScaledObject")[0]
    SCALED_OBJECT(good)
    for broken in (
        {**good, "spec": {**good["spec"], "minReplicas": 1}},
        {**good, "spec": {k: v for k, v in good["spec"].items() if k != "scaleTargetRef"}},
        {**good, "spec": {**good["spec"], "triggers": [{"metadata": {}}]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            SCALED_OBJECT(broken)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"autoscaler": {"mode": "keda"}}, "autoscaler.targets"),
        (
            {"autoscaler": {"mode": "keda", "targets": [{"name": "s", "dryRun": True, "streams": ["s"]}]}},
            "dryRun",
        ),
        (
            {
                "autoscaler": {
                    "mode": "keda",
                    "targets": [
                        {
                            "name": "s",
                            "deployment": "d",
                            "streams": ["s"],
                            "group": "g",
                            "signal": "lag_plus_pending",
                        }
                    ],
                }
            },
            "lag_plus_pending",
        ),
        (
            {"autoscaler": {"mode": "keda", "targets": TARGETS}, "redis": {"url": "redis://r:6379/0"}},
            "autoscaler.keda.address",
        ),
        ({"redisServer": {"enabled": True}, "redis": {"url": "redis://r:6379/0"}}, "redisServer.enabled"),
    ],
)
def test_impossible_combinations_fail_the_render_with_a_message(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(caught.value)


def test_keda_reaches_the_charts_own_redis_or_an_explicit_address() -> None:
    own = render({"autoscaler": {"mode": "keda", "targets": TARGETS[:1]}, "redisServer": {"enabled": True}})
    trigger = by_kind(own, "ScaledObject")[0]["spec"]["triggers"][0]["metadata"]
    assert trigger["address"] == f"{FULLNAME}-redis:6379"
    values = {
        "autoscaler": {
            "mode": "keda",
            "targets": TARGETS[:1],
            "keda": {"address": "s1:26379,s2:26379", "triggerType": "redis-sentinel-streams"},
        },
        "redis": {"urlSecret": {"name": "redis-conn", "key": "url"}},
    }
    trigger = by_kind(render(values), "ScaledObject")[0]["spec"]["triggers"][0]
    assert (
        trigger["type"] == "redis-sentinel-streams" and trigger["metadata"]["address"] == "s1:26379,s2:26379"
    )


# --- Ingress, HTTPRoute, NetworkPolicy -------------------------------------------------------------


def test_the_ingress_and_the_route_send_traffic_to_the_services_http_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    service = one(rendered["ingress"], "Service")
    assert service["metadata"]["name"] == FULLNAME
    ingress = one(rendered["ingress"], "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["llm.example.com"], "secretName": "llm-tls"}]
    paths = {(r["host"], p["path"], p["pathType"]) for r in ingress["rules"] for p in r["http"]["paths"]}
    assert paths == {("llm.example.com", "/", "Prefix"), ("api.example.com", "/v1", "Prefix")}
    for rule in ingress["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
    assert not by_kind(render(), "Ingress") and not by_kind(render(), "HTTPRoute")
    route = one(rendered["httproute"], "HTTPRoute")["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert route["hostnames"] == ["llm.example.com"]
    (rule,) = route["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    port = next(
        p["port"] for p in one(rendered["httproute"], "Service")["spec"]["ports"] if p["name"] == "http"
    )
    assert rule["backendRefs"] == [{"name": FULLNAME, "port": port}]
    assert rule["timeouts"] == {"request": "600s", "backendRequest": "600s"}


def test_the_route_fails_the_crd_schema_when_broken(rendered: dict[str, list[dict[str, Any]]]) -> None:
    good = one(rendered["httproute"], "HTTPRoute")
    HTTP_ROUTE(good)
    rule = good["spec"]["rules"][0]
    for broken_rule in (
        {**rule, "backends": rule["backendRefs"]},
        {**rule, "matches": [{"path": {"type": "Glob"}}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            HTTP_ROUTE({**good, "spec": {**good["spec"], "rules": [broken_rule]}})


def test_network_policies_admit_only_the_listed_peers_on_the_named_ports(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["networkpolicy"]
    policy = one(objects, "NetworkPolicy")["spec"]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    api, sidecar = policy["ingress"]
    assert [p["port"] for p in api["ports"]] == ["http"] and [p["port"] for p in sidecar["ports"]] == [
        "autoscaler"
    ]
    assert {"http", "autoscaler"} <= ports
    assert api["from"][0] == NETWORK["networkPolicy"]["from"][0]
    test_pod = one(objects, "Pod")
    assert api["from"][1]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
    assert sidecar["from"] == NETWORK["networkPolicy"]["metricsFrom"]
    assert policy["egress"] == NETWORK["networkPolicy"]["egress"]
    # Without peers: the ports are open to any caller, egress is not restricted.
    open_objects = rendered["networkpolicy-open"]
    gateway_policy = one(open_objects, "NetworkPolicy", FULLNAME)["spec"]
    assert gateway_policy["policyTypes"] == ["Ingress"]
    assert all("from" not in rule for rule in gateway_policy["ingress"])
    redis_policy = one(open_objects, "NetworkPolicy", f"{FULLNAME}-redis")["spec"]
    redis_pod = one(open_objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert redis_policy["podSelector"]["matchLabels"].items() <= redis_pod.items()
    (rule,) = redis_policy["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": one(open_objects, "Deployment")["spec"]["selector"]["matchLabels"]}}
    ]
    assert not by_kind(render(), "NetworkPolicy")


# --- The chart's own Redis -------------------------------------------------------------------------


def test_the_single_node_redis_keeps_an_append_only_file_on_a_volume(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["redis-server"]
    statefulset = one(objects, "StatefulSet")
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec"
    assert pairs["--dir"] == "/data" and pairs["--requirepass"] == "$(REDIS_PASSWORD)"
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"
    assert {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert statefulset["spec"]["replicas"] == 1
    service = one(objects, "Service", f"{FULLNAME}-redis")
    assert (
        service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    # The gateway's selector must not pick up the Redis pod (nor the other way round).
    gateway_selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not gateway_selector.items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    for container in containers(objects).values():
        env = env_of(container)
        assert env["REDIS_URL"]["value"] == f"redis://{FULLNAME}-redis:6379/0"
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"
    assert not by_kind(render(), "StatefulSet")


# --- Pod options -----------------------------------------------------------------------------------


def test_startup_probe_and_pre_stop_fit_the_grace_period(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = render()
    gateway = containers(objects)["gateway"]
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["startupProbe"]["failureThreshold"] * gateway["startupProbe"]["periodSeconds"] >= 30
    sleep = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) > 0
    drain = yaml.safe_load(policy_text(objects))["server"]["drain_timeout_s"]
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert int(sleep[1]) + drain < grace  # the pod is not killed in the middle of its drain
    assert "lifecycle" not in containers(rendered["no-prestop-no-spread"])["gateway"]


def test_replicas_spread_over_zones_and_nodes_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]
    spread = pod["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for constraint in spread:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway" and constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    custom = one(rendered["spread-custom"], "Deployment")["spec"]["template"]["spec"]
    assert custom["topologySpreadConstraints"] == VARIANTS["spread-custom"]["topologySpreadConstraints"]
    off = one(rendered["no-prestop-no-spread"], "Deployment")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in off


def test_extra_env_volumes_and_sidecars_reach_the_pod(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["extras"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    by_name = containers(objects)
    assert list(by_name) == ["gateway", "autoscaler", "log-shipper"]
    gateway = by_name["gateway"]
    assert env_of(gateway)["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    assert gateway["envFrom"] == EXTRAS["gateway"]["envFrom"]
    assert EXTRAS["gateway"]["extraVolumeMounts"][0] in gateway["volumeMounts"]
    assert EXTRAS["extraVolumes"][0] in pod["volumes"]
    assert "envFrom" not in by_name["autoscaler"]  # the sidecar gets no extra secrets


# --- helm test -------------------------------------------------------------------------------------


def test_helm_test_asks_the_services_readyz_and_fails_when_it_cannot(gateway: str) -> None:
    objects = render()
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    (url,) = container["args"]
    assert url == f"http://{FULLNAME}.{NAMESPACE}.svc:8080/readyz"
    assert container["image"] == containers(objects)["gateway"]["image"]
    assert httpx.get(f"{gateway}/readyz").status_code == 200

    def run(target: str) -> int:
        command = [sys.executable if container["command"][0] == "python" else container["command"][0]]
        return subprocess.run(
            [*command, *container["command"][1:], target], capture_output=True, timeout=20
        ).returncode

    assert run(f"{gateway}/readyz") == 0
    assert run(f"http://127.0.0.1:{free_port()}/readyz") != 0


# --- The chart's README ----------------------------------------------------------------------------


def test_the_chart_readme_is_generated_from_the_current_values() -> None:
    result = subprocess.run(
        [sys.executable, str(CHART.parent / "generate.py"), "readme", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
    text = (CHART / "README.md").read_text()
    for key, description in (
        ("autoscaler.mode", "keda"),
        ("redisServer", "appendfsync everysec"),
        ("redisServer", "production brings its own Redis"),
        ("alerts.cacheHitRate", "minLookupsPerSecond"),
        ("metrics.prometheusRule.selector", "plain scrape config"),
    ):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert description in row, (key, row)


def test_every_value_has_a_row_in_the_chart_readme() -> None:
    sys.path.insert(0, str(CHART.parent))
    try:
        from generate import value_rows  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = {key for key, _, _ in value_rows((CHART / "values.yaml").read_text())}

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict) and node and prefix != "policy":
            return [k for name, child in node.items() for k in leaves(child, f"{prefix}.{name}".lstrip("."))]
        return [prefix]

    for key in leaves(values, ""):
        covered = any(key == d or key.startswith(d + ".") for d in documented)
        assert covered, f"{key} has no row in the chart README"
