"""The chart's Redis settings (helm/llm-gateway `redis.*`): the store URL it builds for one server, a Sentinel
group or a Cluster, the credentials it passes beside the URL, the TLS CA it mounts. Each rendered pod's
environment is resolved as the kubelet would, and the rendered policy is read back by the gateway's own
Policy model and store topology parser, so what the chart writes is what the gateway connects to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from gateway.policy import load_policy
from gateway.store.topology import Topology, parse
from tests.chart_helpers import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    by_kind,
    containers,
    env_of,
    one,
    policy_text,
    render,
)

KUBE_VERSION = "1.35.0"
PASSWORD = "p@ss:w/rd#?%&=+ ä"  # every character a URL's userinfo would need escaped
SECRETS = {
    ("redis", "redis-password"): PASSWORD,
    ("redis-conn", "url"): "redis+cluster://n9:7000",
    ("llm-gateway-keys", "openai-api-key"): "sk-x",
    ("llm-gateway-keys", "admin-key"): "admin",
}
AUTH = {"username": "gateway", "password": {"secretName": "redis"}}
SENTINEL = {"masterName": "mymaster", "hosts": ["s1:26379", "s2:26379", "s3:26379"]}
CLUSTER = {"nodes": ["n1:6379", "n2:6379"]}

MODES: dict[str, tuple[dict[str, Any], str, Topology]] = {
    "single": (
        {"host": "redis.data.svc", "port": 6380, "db": 2, **AUTH},
        "redis://redis.data.svc:6380/2",
        Topology("single", url="redis://redis.data.svc:6380/2", db=2, username="gateway", password=PASSWORD),
    ),
    "single-tls": (
        {"host": "redis.data.svc", "tls": {"enabled": True}, "password": {"secretName": "redis"}},
        "rediss://redis.data.svc:6379/0",
        Topology("single", url="rediss://redis.data.svc:6379/0", tls=True, password=PASSWORD),
    ),
    "sentinel": (
        {"mode": "sentinel", "sentinel": SENTINEL, "db": 3, **AUTH},
        "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster/3",
        Topology(
            "sentinel",
            [("s1", 26379), ("s2", 26379), ("s3", 26379)],
            db=3,
            master="mymaster",
            username="gateway",
            password=PASSWORD,
        ),
    ),
    "cluster-tls": (
        {"mode": "cluster", "cluster": CLUSTER, "tls": {"enabled": True}, **AUTH},
        "rediss+cluster://n1:6379,n2:6379",
        Topology("cluster", [("n1", 6379), ("n2", 6379)], tls=True, username="gateway", password=PASSWORD),
    ),
    "no-credentials": (
        {"mode": "cluster", "cluster": CLUSTER},
        "redis+cluster://n1:6379,n2:6379",
        Topology("cluster", [("n1", 6379), ("n2", 6379)]),
    ),
}


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet gives it, Secrets read from ``SECRETS``."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = SECRETS[(ref["name"], ref["key"])]
    return env


def topology_of(objects: list[dict[str, Any]], container: str, tmp_path: Path) -> Topology:
    """What the gateway (or the sidecar) of ``objects`` connects to: its policy read with its environment."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(objects))
    return parse(load_policy(path, resolved_env(containers(objects)[container])).store)


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_renders_its_url_and_the_credentials_beside_it(mode: str, tmp_path: Path) -> None:
    redis, url, topology = MODES[mode]
    objects = render({"redis": redis})
    for obj in objects:
        if obj["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    for name, container in containers(objects).items():
        env = env_of(container)
        assert env["REDIS_URL"] == {"name": "REDIS_URL", "value": url}
        if "password" in redis:
            assert env["REDIS_PASSWORD"]["valueFrom"] == {
                "secretKeyRef": {"name": "redis", "key": "redis-password"}
            }
        else:
            assert "REDIS_PASSWORD" not in env
        assert ("REDIS_USERNAME" in env) is ("username" in redis)
        assert topology_of(objects, name, tmp_path) == topology


def test_a_password_with_url_special_characters_stays_out_of_the_url(tmp_path: Path) -> None:
    objects = render({"redis": MODES["single"][0]})
    for name, container in containers(objects).items():
        url = env_of(container)["REDIS_URL"]["value"]
        assert "@" not in url and "$(" not in url  # neither the password nor a reference to it
        assert topology_of(objects, name, tmp_path).password == PASSWORD  # exactly, nothing to unescape


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"mode": "sentinel", "sentinel": {"hosts": ["s1:26379"]}}, "/redis/sentinel/masterName"),
        ({"mode": "sentinel", "sentinel": {"masterName": "mymaster"}}, "/redis/sentinel/hosts"),
        ({"mode": "cluster"}, "/redis/cluster/nodes"),
        ({"mode": "cluster", "cluster": {"nodes": ["n1"]}}, "/redis/cluster/nodes/0"),
        ({"mode": "sentinel", "sentinel": {**SENTINEL, "masterName": "a/b"}}, "masterName"),
        ({"mode": "replicated"}, "/redis/mode"),
        ({"tls": True}, "/redis/tls"),
        ({"tls": {"enabled": True, "ca": "x"}}, "/redis/tls"),
    ],
)
def test_the_schema_refuses_an_incomplete_topology(redis: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.validate_schema({"redis": redis})
    assert message in str(caught.value)


def test_a_cluster_with_a_database_number_fails_the_render_with_a_message() -> None:
    values = {"redis": {"mode": "cluster", "cluster": CLUSTER, "db": 1}}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="only database 0"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("redis", "topology"),
    [
        ({"url": "rediss://r:6380/1"}, Topology("single", url="rediss://r:6380/1", tls=True, db=1)),
        (
            {"url": "redis+sentinel://s1:26379/mymaster"},
            Topology("sentinel", [("s1", 26379)], master="mymaster"),
        ),
        ({"url": "unix:///run/redis.sock"}, Topology("single", url="unix:///run/redis.sock")),
        ({"urlSecret": {"name": "redis-conn", "key": "url"}}, Topology("cluster", [("n9", 7000)])),
    ],
)
def test_a_whole_url_keeps_working_in_any_form(
    redis: dict[str, Any], topology: Topology, tmp_path: Path
) -> None:
    objects = render({"redis": redis})
    env = env_of(containers(objects)["gateway"])
    if "url" in redis:
        assert env["REDIS_URL"]["value"] == redis["url"]
    else:
        assert env["REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis-conn", "key": "url"}}
    assert topology_of(objects, "gateway", tmp_path) == topology
    # The password Secret goes beside a whole URL too (the policy's store.password overrides the URL's).
    with_auth = render({"redis": {**redis, **AUTH}})
    assert topology_of(with_auth, "gateway", tmp_path).password == PASSWORD


def test_the_tls_ca_is_mounted_and_named_in_the_policy(tmp_path: Path) -> None:
    values = {
        "redis": {
            "mode": "cluster",
            "cluster": CLUSTER,
            "tls": {"enabled": True, "caSecret": {"name": "redis-ca"}},
        }
    }
    objects = render(values)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "redis-ca"]
    assert volume["secret"] == {"secretName": "redis-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(objects))
    ca_file = load_policy(path, {"REDIS_URL": "rediss+cluster://n1:6379"}).store.tls.ca_file
    for container in containers(objects).values():
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "redis-ca"]
        assert ca_file == f"{mount['mountPath']}/ca.crt" and mount["readOnly"]
    for obj in objects:
        if obj["kind"] == "Deployment":
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    assert not [
        v
        for v in one(render(), "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "redis-ca"
    ]
    clash = {**values, "policy": {"store": {"tls": {"ca_file": "/x.pem"}}}}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"redis\.tls\.caSecret"):
        chart.render(clash, name=RELEASE, namespace=NAMESPACE)


def test_the_charts_own_redis_gets_the_password_beside_the_url(tmp_path: Path) -> None:
    objects = render({"redisServer": {"enabled": True}, "redis": AUTH})
    for name, container in containers(objects).items():
        env = env_of(container)
        assert env["REDIS_URL"]["value"] == f"redis://{FULLNAME}-redis:6379/0"
        assert "REDIS_USERNAME" not in env  # requirepass: the default user
        assert topology_of(objects, name, tmp_path).password == PASSWORD


def test_keda_follows_the_sentinel_mode() -> None:
    targets = [{"name": "coders", "deployment": "coder-agents", "streams": ["tasks:stream"]}]
    values: dict[str, Any] = {
        "autoscaler": {"mode": "keda", "targets": targets, "keda": {"triggerType": "redis-sentinel-streams"}},
        "redis": {"mode": "sentinel", "sentinel": SENTINEL},
    }
    (trigger,) = by_kind(render(values), "ScaledObject")[0]["spec"]["triggers"]
    assert trigger["type"] == "redis-sentinel-streams"
    assert trigger["metadata"]["address"] == "s1:26379,s2:26379,s3:26379"
    assert trigger["metadata"]["sentinelMaster"] == "mymaster"
    values["autoscaler"]["keda"]["triggerType"] = "redis-streams"
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="redis-sentinel-streams"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
