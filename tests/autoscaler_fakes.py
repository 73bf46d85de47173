"""Fakes and fixtures for the autoscaler tests (loaded by ``tests/conftest.py``).

The fake control APIs, Kubernetes' scale subresource and Docker's service API, are real aiohttp
servers (TCP for Kubernetes, a unix socket for Docker), so the actuators are tested over the wire.
They record every request and can be told to fail the next calls.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

SCALE_PATH = "/apis/apps/v1/namespaces/{namespace}/{resource}/{name}/scale"


class _Fake:
    """Start/stop and ``async with`` for an aiohttp app on one site."""

    def __init__(self) -> None:
        self.app = web.Application()
        self._runner: web.AppRunner | None = None

    async def _site(self, runner: web.AppRunner) -> web.BaseSite:
        raise NotImplementedError

    async def start(self) -> Any:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await (await self._site(self._runner)).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _status(code: int, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
    return web.json_response(body, status=code)


class FakeKubernetes(_Fake):
    """``GET``/``PATCH`` on ``deployments`` and ``statefulsets`` scale subresources."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas: dict[tuple[str, str, str], int] = {}
        """(namespace, resource plural, name) -> spec.replicas."""
        self.patches: list[tuple[str, int]] = []
        self.requests: list[tuple[float, str, str | None]] = []
        """(monotonic time, method, Authorization header) of every request."""
        self.fail_get: list[int] = []
        """HTTP statuses the next GETs answer with, consumed in order."""
        self.fail_patch: list[int] = []
        self.gets = 0
        self.url = ""
        self.app.router.add_get(SCALE_PATH, self._get)
        self.app.router.add_patch(SCALE_PATH, self._patch)

    async def _site(self, runner: web.AppRunner) -> web.BaseSite:
        return web.TCPSite(runner, "127.0.0.1", 0)

    async def start(self) -> FakeKubernetes:
        await super().start()
        assert self._runner is not None
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    def _record(self, request: web.Request) -> None:
        self.requests.append((time.monotonic(), request.method, request.headers.get("Authorization")))

    def _key(self, request: web.Request) -> tuple[str, str, str]:
        info = request.match_info
        return info["namespace"], info["resource"], info["name"]

    async def _get(self, request: web.Request) -> web.Response:
        self.gets += 1
        self._record(request)
        if self.fail_get:
            return _status(self.fail_get.pop(0), "injected failure")
        key = self._key(request)
        if key not in self.replicas:
            return _status(404, f'{key[1]} "{key[2]}" not found')
        return web.json_response(self._scale(key))

    async def _patch(self, request: web.Request) -> web.Response:
        self._record(request)
        if request.content_type != "application/merge-patch+json":
            return _status(415, f"unsupported media type {request.content_type}")
        if self.fail_patch:
            return _status(self.fail_patch.pop(0), "injected failure")
        key = self._key(request)
        if key not in self.replicas:
            return _status(404, "not found")
        replicas = (await request.json())["spec"]["replicas"]
        self.replicas[key] = replicas
        self.patches.append((key[2], replicas))
        return web.json_response(self._scale(key))

    def _scale(self, key: tuple[str, str, str]) -> dict[str, Any]:
        namespace, _, name = key
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": self.replicas[key]},
            "status": {"replicas": self.replicas[key]},
        }


class FakeDocker(_Fake):
    """``GET /services/{name}``, ``POST /services/{name}/update?version=N`` (API version prefix optional)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.services: dict[str, dict[str, Any]] = {}
        self.updates: list[tuple[str, int]] = []
        self.race_next_updates = 0
        """This many upcoming updates find that someone else updated the service just before."""
        for prefix in ("", "/{api_version:v[0-9.]+}"):
            self.app.router.add_get(prefix + "/services/{name}", self._inspect)
            self.app.router.add_post(prefix + "/services/{name}/update", self._update)

    async def _site(self, runner: web.AppRunner) -> web.BaseSite:
        return web.UnixSite(runner, self.socket_path)

    def add_service(self, name: str, replicas: int | None) -> None:
        """A replicated service, or a global one when ``replicas`` is None."""
        mode: dict[str, Any] = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
        spec = {"Name": name, "Mode": mode, "TaskTemplate": {"ContainerSpec": {"Image": "agent:1"}}}
        self.services[name] = {"ID": f"id-{name}", "Version": {"Index": 10}, "Spec": spec}

    def replicas(self, name: str) -> int:
        return int(self.services[name]["Spec"]["Mode"]["Replicated"]["Replicas"])

    def set_replicas(self, name: str, replicas: int) -> None:
        """Someone else (an operator) scales the service: the version index moves on."""
        service = self.services[name]
        service["Spec"]["Mode"]["Replicated"]["Replicas"] = replicas
        service["Version"]["Index"] += 1

    async def _inspect(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["name"])
        if service is None:
            return web.json_response({"message": "service not found"}, status=404)
        return web.json_response(service)

    async def _update(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        service = self.services.get(name)
        if service is None:
            return web.json_response({"message": "service not found"}, status=404)
        if self.race_next_updates:
            self.race_next_updates -= 1
            service["Version"]["Index"] += 1
        if int(request.query.get("version", "-1")) != service["Version"]["Index"]:
            message = "rpc error: code = Unknown desc = update out of sequence"
            return web.json_response({"message": message}, status=500)
        spec = await request.json()
        service["Spec"] = spec
        service["Version"]["Index"] += 1
        self.updates.append((name, int(spec["Mode"]["Replicated"]["Replicas"])))
        return web.json_response({"Warnings": None})


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the test's empty keyspace, with timeouts short enough for outage tests."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


@pytest.fixture
async def k8s() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as fake:
        yield fake


@pytest.fixture
def socket_dir() -> Iterator[str]:
    """Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer."""
    path = tempfile.mkdtemp(prefix="as-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def docker(socket_dir: str) -> AsyncIterator[FakeDocker]:
    async with FakeDocker(f"{socket_dir}/docker.sock") as fake:
        yield fake
