"""The ``autoscaler`` policy section: defaults, parsing through the shared loader, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy import ConfigError, Policy, load_policy
from gateway.policy.autoscaler import (
    AutoscalerConfig,
    DryRunActuatorConfig,
    KubernetesActuatorConfig,
    SwarmActuatorConfig,
    TargetConfig,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_a_policy_without_the_section_gets_the_seed_defaults() -> None:
    config = Policy().autoscaler
    assert (config.listen_port, config.poll_interval_s, config.cooldown_s) == (9091, 5.0, 60.0)
    [target] = config.targets
    assert target.streams == ["tasks:stream"]
    assert (target.queue_high, target.queue_low, target.step) == (100, 20, 2)
    assert target.effective_signal == "xlen"
    assert isinstance(target.actuator, DryRunActuatorConfig)
    assert (config.retry.attempts, config.retry.deadline_s) == (4, 10.0)
    assert (
        AutoscalerConfig(retry={"attempts": 2}).retry.deadline_s == 10.0
    )  # omitted keys keep these defaults


def test_actuators_are_chosen_by_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
store: {url: "redis://localhost:6379/0"}
autoscaler:
  poll_interval_s: 2
  targets:
    - name: coders
      streams: [tasks:stream, tasks:urgent]
      group: agents
      actuator: {type: kubernetes, resource: statefulset, name: coder, namespace: agents}
    - name: testers
      actuator: {type: swarm, service: tester, api_version: v1.43}
""",
    )
    config = load_policy(path, env={}).autoscaler
    coders, testers = config.targets
    assert isinstance(coders.actuator, KubernetesActuatorConfig)
    assert (coders.actuator.resource, coders.actuator.name, coders.actuator.namespace) == (
        "statefulset",
        "coder",
        "agents",
    )
    assert coders.effective_signal == "lag_plus_pending"
    assert isinstance(testers.actuator, SwarmActuatorConfig)
    assert testers.actuator.socket == "/var/run/docker.sock"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{queue_low: 100, queue_high: 100}", "queue_low (100) must be below queue_high (100)"),
        ("{min_replicas: 5, max_replicas: 2}", "min_replicas (5) exceeds max_replicas (2)"),
        ("{signal: lag}", "signal 'lag' needs a consumer 'group'"),
        ("{actuator: {type: nomad}}", "autoscaler.targets.0.actuator"),
        ("{streams: []}", "autoscaler.targets.0.streams"),
        ("{stepp: 3}", "autoscaler.targets.0.stepp"),
    ],
)
def test_mistakes_are_reported_with_their_key(tmp_path: Path, target: str, message: str) -> None:
    path = write(tmp_path, f"autoscaler:\n  targets:\n    - {target}\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(path, env={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_target_names_are_unique() -> None:
    with pytest.raises(ValueError, match="target names must be unique"):
        AutoscalerConfig(targets=[TargetConfig(), TargetConfig()])


def test_explicit_signal_wins_over_auto() -> None:
    assert TargetConfig(group="g", signal="pending").effective_signal == "pending"
    assert TargetConfig(group="g", signal="xlen").effective_signal == "xlen"
