"""An actuator that only pretends: decisions are logged and exported, the count lives in memory."""

from __future__ import annotations

from gateway.autoscaler.actuators.base import Actuator


class DryRunActuator(Actuator):
    def __init__(self, name: str, replicas: int) -> None:
        self.description = f"dry-run {name}"
        self.replicas = replicas

    async def get_replicas(self) -> int:
        return self.replicas

    async def set_replicas(self, replicas: int) -> None:
        self.replicas = replicas
