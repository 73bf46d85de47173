"""Backends that read and set a target's replica count: Kubernetes, Docker Swarm, or dry-run."""

from __future__ import annotations

from gateway.autoscaler.actuators.base import Actuator, ActuatorError, ActuatorSetupError, with_retry
from gateway.autoscaler.actuators.dry_run import DryRunActuator
from gateway.autoscaler.actuators.kube_credentials import resolve
from gateway.autoscaler.actuators.kubernetes import KubernetesActuator
from gateway.autoscaler.actuators.swarm import SwarmActuator
from gateway.policy.autoscaler import KubernetesActuatorConfig, SwarmActuatorConfig, TargetConfig

__all__ = ["Actuator", "ActuatorError", "ActuatorSetupError", "build_actuator", "with_retry"]


def build_actuator(target: TargetConfig) -> Actuator:
    """The actuator a target's policy names; raises :class:`ActuatorSetupError` when it cannot be set up."""
    config = target.actuator
    if isinstance(config, KubernetesActuatorConfig):
        return KubernetesActuator(config, resolve(config))
    if isinstance(config, SwarmActuatorConfig):
        return SwarmActuator(config)
    start = config.replicas if config.replicas is not None else target.min_replicas
    return DryRunActuator(target.name, start)
