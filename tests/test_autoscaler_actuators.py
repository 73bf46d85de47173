"""Actuators over the wire: a fake Kubernetes API on TCP and a fake Docker Engine on a unix socket."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.autoscaler.actuators import ActuatorError, ActuatorSetupError, build_actuator, with_retry
from gateway.autoscaler.actuators.dry_run import DryRunActuator
from gateway.autoscaler.actuators.kube_credentials import from_kubeconfig, resolve
from gateway.autoscaler.actuators.kubernetes import KubernetesActuator
from gateway.autoscaler.actuators.swarm import SwarmActuator
from gateway.policy.autoscaler import KubernetesActuatorConfig, SwarmActuatorConfig, TargetConfig
from gateway.policy.core import RetryConfig

if TYPE_CHECKING:
    from tests.autoscaler_fakes import FakeDocker, FakeKubernetes


FAST_RETRY = RetryConfig(attempts=3, backoff_base_s=0.0, backoff_max_s=0.0, deadline_s=5.0)


def kube_actuator(k8s: FakeKubernetes, **options: object) -> KubernetesActuator:
    config = KubernetesActuatorConfig(type="kubernetes", api_url=k8s.url, **options)  # type: ignore[arg-type]
    return KubernetesActuator(config, resolve(config))


@pytest.mark.parametrize("resource", ["deployment", "statefulset"])
async def test_kubernetes_reads_and_patches_the_scale_subresource(
    k8s: FakeKubernetes, tmp_path: Path, resource: str
) -> None:
    k8s.replicas[("agents", f"{resource}s", "coder")] = 3
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    actuator = kube_actuator(k8s, resource=resource, name="coder", namespace="agents", token_file=str(token))
    try:
        assert await actuator.get_replicas() == 3
        token.write_text("rotated")  # projected tokens rotate: read per request
        await actuator.set_replicas(5)
        assert await actuator.get_replicas() == 5
    finally:
        await actuator.close()
    assert k8s.patches == [("coder", 5)]
    assert [auth for _, _, auth in k8s.requests] == ["Bearer t0k3n", "Bearer rotated", "Bearer rotated"]


async def test_kubernetes_errors_are_transient_or_not(k8s: FakeKubernetes) -> None:
    actuator = kube_actuator(k8s, name="missing")
    try:
        with pytest.raises(ActuatorError, match="HTTP 404") as caught:
            await with_retry(actuator.get_replicas, FAST_RETRY, "test")
        assert not caught.value.transient
        assert k8s.gets == 1  # a permanent error is not retried
        k8s.replicas[("default", "deployments", "missing")] = 2
        k8s.fail_get = [503, 429]
        assert await with_retry(actuator.get_replicas, FAST_RETRY, "test") == 2
        assert k8s.gets == 4
        k8s.fail_patch = [500, 500, 500]
        with pytest.raises(ActuatorError, match="HTTP 500"):
            await with_retry(lambda: actuator.set_replicas(4), FAST_RETRY, "test")
        assert k8s.patches == []
    finally:
        await actuator.close()


async def test_an_unreachable_api_is_a_transient_error(k8s: FakeKubernetes) -> None:
    actuator = kube_actuator(k8s)
    await k8s.stop()
    try:
        with pytest.raises(ActuatorError) as caught:
            await actuator.get_replicas()
        assert caught.value.transient
    finally:
        await actuator.close()


async def test_retry_gives_up_at_the_deadline() -> None:
    calls: list[float] = []

    async def flaky() -> int:
        calls.append(0)
        raise ActuatorError("busy", transient=True)

    elapsed = [0.0]

    async def fake_sleep(delay: float) -> None:
        elapsed[0] += delay

    retry = RetryConfig(attempts=10, backoff_base_s=1.0, backoff_max_s=4.0, deadline_s=6.0)
    with pytest.raises(ActuatorError):
        await with_retry(flaky, retry, "test", sleep=fake_sleep, clock=lambda: elapsed[0])
    assert len(calls) == 3  # delays 1 + 2 fit in 6 s, adding 4 would not


def test_resolve_in_cluster_needs_the_service_environment(tmp_path: Path) -> None:
    config = KubernetesActuatorConfig(type="kubernetes")
    with pytest.raises(ActuatorSetupError, match="KUBERNETES_SERVICE_HOST"):
        resolve(config, env={})
    token = tmp_path / "token"
    token.write_text("sa-token")
    config = KubernetesActuatorConfig(
        type="kubernetes", token_file=str(token), ca_file=str(tmp_path / "none")
    )
    creds = resolve(config, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"})
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.headers() == {"Authorization": "Bearer sa-token"}


def test_kubeconfig_context_token_and_ca(tmp_path: Path) -> None:
    certifi = pytest.importorskip("certifi")
    end = "-----END CERTIFICATE-----\n"
    pem = Path(certifi.where()).read_text().split(end)[0] + end
    ca_data = base64.b64encode(pem.encode()).decode()
    (tmp_path / "token").write_text("from-file")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""
current-context: prod
clusters:
  - name: c1
    cluster: {{server: "https://k8s.example:6443/", certificate-authority-data: {ca_data}}}
  - name: c2
    cluster: {{server: "https://dev.example", insecure-skip-tls-verify: true}}
contexts:
  - {{name: prod, context: {{cluster: c1, user: u1}}}}
  - {{name: dev, context: {{cluster: c2, user: u2}}}}
users:
  - {{name: u1, user: {{token: abc}}}}
  - {{name: u2, user: {{tokenFile: token}}}}
  - {{name: u3, user: {{exec: {{command: aws}}}}}}
"""
    )
    prod = from_kubeconfig(str(kubeconfig))
    assert (prod.server, prod.headers()) == ("https://k8s.example:6443", {"Authorization": "Bearer abc"})
    assert prod.ssl is not False
    dev = from_kubeconfig(str(kubeconfig), context="dev")
    assert (dev.server, dev.ssl) == ("https://dev.example", False)
    assert dev.headers() == {"Authorization": "Bearer from-file"}
    with pytest.raises(ActuatorSetupError, match="no entry named 'staging' in contexts"):
        from_kubeconfig(str(kubeconfig), context="staging")
    with pytest.raises(ActuatorSetupError, match="cannot read it"):
        from_kubeconfig(str(tmp_path / "absent"))


def test_kubeconfig_exec_users_are_refused(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        """
current-context: eks
clusters: [{name: c, cluster: {server: "https://eks"}}]
contexts: [{name: eks, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws}}}]
"""
    )
    with pytest.raises(ActuatorSetupError, match="exec and auth-provider"):
        from_kubeconfig(str(kubeconfig))


@pytest.mark.parametrize("api_version", ["", "v1.43"])
async def test_swarm_updates_with_the_current_version_index(docker: FakeDocker, api_version: str) -> None:
    docker.add_service("coder", 2)
    actuator = SwarmActuator(
        SwarmActuatorConfig(type="swarm", service="coder", socket=docker.socket_path, api_version=api_version)
    )
    try:
        assert await actuator.get_replicas() == 2
        docker.set_replicas("coder", 3)  # an operator moved it: the index changed too
        await actuator.set_replicas(5)
        docker.race_next_updates = 1  # someone else updates between our read and our write
        await with_retry(lambda: actuator.set_replicas(7), FAST_RETRY, "test")
    finally:
        await actuator.close()
    assert docker.updates == [("coder", 5), ("coder", 7)]
    assert docker.replicas("coder") == 7
    assert docker.services["coder"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "agent:1"


async def test_swarm_out_of_sequence_is_transient_and_global_services_are_refused(docker: FakeDocker) -> None:
    docker.add_service("coder", 2)
    docker.add_service("monitor", None)
    actuator = SwarmActuator(SwarmActuatorConfig(type="swarm", service="coder", socket=docker.socket_path))
    other = SwarmActuator(SwarmActuatorConfig(type="swarm", service="monitor", socket=docker.socket_path))
    try:
        docker.race_next_updates = 1
        with pytest.raises(ActuatorError, match="update out of sequence") as caught:
            await actuator.set_replicas(4)
        assert caught.value.transient
        with pytest.raises(ActuatorError, match="not a replicated service") as caught:
            await other.get_replicas()
        assert not caught.value.transient
    finally:
        await actuator.close()
        await other.close()


async def test_swarm_without_a_daemon_is_a_transient_error(socket_dir: str) -> None:
    actuator = SwarmActuator(SwarmActuatorConfig(type="swarm", socket=f"{socket_dir}/absent.sock"))
    try:
        with pytest.raises(ActuatorError) as caught:
            await actuator.get_replicas()
        assert caught.value.transient
    finally:
        await actuator.close()


async def test_build_actuator_follows_the_policy(docker: FakeDocker) -> None:
    dry = build_actuator(TargetConfig(min_replicas=3))
    assert isinstance(dry, DryRunActuator)
    assert await dry.get_replicas() == 3
    await dry.set_replicas(5)
    assert await dry.get_replicas() == 5
    swarm = build_actuator(TargetConfig(actuator={"type": "swarm", "socket": docker.socket_path}))
    assert isinstance(swarm, SwarmActuator)
    with pytest.raises(ActuatorSetupError):
        build_actuator(TargetConfig(actuator={"type": "kubernetes", "kubeconfig": "/nonexistent/config"}))
