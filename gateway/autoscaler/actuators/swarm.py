"""Scale a replicated Docker Swarm service through the Engine API on its unix socket.

An update must carry the service's current ``Version.Index`` and its whole spec; when someone else
updated it in between, Docker answers 500 "update out of sequence", which is transient here: the
retry reads the service again and resends with the new index.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.autoscaler.actuators.base import Actuator, ActuatorError, replica_count, request_json
from gateway.policy.autoscaler import SwarmActuatorConfig


class SwarmActuator(Actuator):
    def __init__(self, config: SwarmActuatorConfig) -> None:
        self.config = config
        version = f"/{config.api_version.strip('/')}" if config.api_version else ""
        self.base = f"http://docker{version}/services/{config.service}"
        self.description = f"swarm service {config.service}"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.config.socket),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            )
        return self._session

    async def _inspect(self) -> tuple[int, dict[str, Any]]:
        """The service's version index and spec, checked to be a replicated service."""
        what = f"GET {self.description}"
        body = await request_json(self._client(), "GET", self.base, what) or {}
        spec = body.get("Spec") or {}
        if "Replicated" not in (spec.get("Mode") or {}):
            raise ActuatorError(f"{what}: not a replicated service", transient=False)
        return int(body.get("Version", {}).get("Index", 0)), spec

    async def get_replicas(self) -> int:
        _, spec = await self._inspect()
        return replica_count(spec["Mode"]["Replicated"].get("Replicas", 0), f"GET {self.description}")

    async def set_replicas(self, replicas: int) -> None:
        version, spec = await self._inspect()
        spec["Mode"]["Replicated"]["Replicas"] = replicas
        what = f"update {self.description} to {replicas}"
        url = f"{self.base}/update"
        await request_json(self._client(), "POST", url, what, params={"version": version}, json=spec)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
