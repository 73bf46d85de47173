"""Scale a Deployment or StatefulSet through its ``scale`` subresource (RBAC: get and patch on it only)."""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.autoscaler.actuators.base import Actuator, ActuatorError, replica_count, request_json
from gateway.autoscaler.actuators.kube_credentials import KubeCredentials
from gateway.policy.autoscaler import KubernetesActuatorConfig


class KubernetesActuator(Actuator):
    """Reads ``spec.replicas`` of the scale subresource and writes it with a JSON merge patch."""

    def __init__(self, config: KubernetesActuatorConfig, credentials: KubeCredentials) -> None:
        self.credentials = credentials
        self.url = (
            f"{credentials.server}/apis/apps/v1/namespaces/{config.namespace}"
            f"/{config.resource}s/{config.name}/scale"
        )
        self.description = f"kubernetes {config.resource} {config.namespace}/{config.name}"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """One session for the process's life, created inside the running loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl, limit=4)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def _call(self, method: str, what: str, **kwargs: Any) -> Any:
        try:
            headers = {**self.credentials.headers(), **kwargs.pop("headers", {})}
        except OSError as exc:
            raise ActuatorError(f"{what}: cannot read token: {exc}", transient=True) from exc
        return await request_json(self._client(), method, self.url, what, headers=headers, **kwargs)

    async def get_replicas(self) -> int:
        what = f"GET {self.description} scale"
        body = await self._call("GET", what)
        return replica_count((body or {}).get("spec", {}).get("replicas", 0), what)

    async def set_replicas(self, replicas: int) -> None:
        await self._call(
            "PATCH",
            f"PATCH {self.description} scale to {replicas}",
            json={"spec": {"replicas": replicas}},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
