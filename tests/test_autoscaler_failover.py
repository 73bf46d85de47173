"""Failover on real time: two sidecars share a Redis and a fake Kubernetes API; one dies mid-run.

Only the leader may touch the target; when it dies without releasing its lock, the standby must take
over and act within the lock's TTL, and a graceful stop must release the lock.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from gateway.autoscaler.actuators.kube_credentials import resolve
from gateway.autoscaler.actuators.kubernetes import KubernetesActuator
from gateway.autoscaler.controller import Autoscaler
from gateway.autoscaler.leader import LeaderElector, LeaderLock
from gateway.policy.autoscaler import AutoscalerConfig, KubernetesActuatorConfig, TargetConfig

if TYPE_CHECKING:
    from tests.autoscaler_fakes import FakeKubernetes


STREAM = "tasks:stream"
LOCK = "llmgw:autoscaler:leader"


async def test_when_the_leader_dies_the_standby_acts_within_the_ttl(
    redis_url: str, k8s: FakeKubernetes, tmp_path: Path
) -> None:
    """Two sidecars on real time: only the leader touches the target; after it dies, the standby does."""
    ttl = 1.0
    k8s.replicas[("default", "deployments", "agents")] = 1
    config = AutoscalerConfig(
        poll_interval_s=0.1,
        cooldown_s=0,
        leader_ttl_s=ttl,
        targets=[TargetConfig(name="failover", step=1, min_replicas=1, max_replicas=1000)],
    )
    seed = aioredis.Redis.from_url(redis_url)
    for _ in range(150):
        await seed.xadd(STREAM, {"task": "t"})
    await seed.aclose()
    sidecars = [await Sidecar.start(config, redis_url, k8s, tmp_path / name) for name in ("first", "second")]
    first, second = sidecars
    await asyncio.sleep(0.5)
    assert first.elector.is_leader and not second.elector.is_leader
    await first.crash()
    died = time.monotonic()
    for _ in range(150):  # up to 3 s
        if any(auth == "Bearer second" for _, _, auth in k8s.requests):
            break
        await asyncio.sleep(0.02)
    await second.stop()
    check = aioredis.Redis.from_url(redis_url)
    assert await check.get(LOCK) is None  # a graceful stop releases the lock
    await check.aclose()
    by_first = [t for t, _, auth in k8s.requests if auth == "Bearer first"]
    by_second = [t for t, method, auth in k8s.requests if auth == "Bearer second" and method == "PATCH"]
    assert len(by_first) >= 4 and max(by_first) <= died
    assert by_second and min(by_second) - died <= ttl + 0.3  # the lock may have just been renewed
    assert min(t for t, _, auth in k8s.requests if auth == "Bearer second") >= died


class Sidecar:
    """One autoscaler process's moving parts, in this event loop: its own client, lock and token."""

    def __init__(self, autoscaler: Autoscaler, elector: LeaderElector, client: aioredis.Redis) -> None:
        self.autoscaler, self.elector, self.client = autoscaler, elector, client
        self.stopping = asyncio.Event()
        self.tasks = [
            asyncio.create_task(elector.run()),
            asyncio.create_task(autoscaler.run(self.stopping, elector.elected)),
        ]

    @classmethod
    async def start(cls, config: AutoscalerConfig, url: str, k8s: FakeKubernetes, token: Path) -> Sidecar:
        write_token(token)
        kube = KubernetesActuatorConfig(type="kubernetes", api_url=k8s.url, token_file=str(token))
        actuator = KubernetesActuator(kube, resolve(kube))
        client = aioredis.Redis.from_url(url)
        lock = LeaderLock(client, LOCK, config.leader_ttl_s)
        elector = LeaderElector(lock, config.leader_ttl_s)
        sidecar = cls(Autoscaler(config, client, {"failover": actuator}, elector, "llmgw:"), elector, client)
        await asyncio.sleep(0.05)
        return sidecar

    async def crash(self) -> None:
        """Stop dead: no lock release, the lock has to expire."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._close()

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.wait_for(self.tasks[1], timeout=2)
        self.tasks[0].cancel()
        await asyncio.gather(self.tasks[0], return_exceptions=True)
        await self.elector.resign()
        await self._close()

    async def _close(self) -> None:
        for controller in self.autoscaler.controllers:
            await controller.actuator.close()
        await self.client.aclose()


def write_token(path: Path) -> None:
    """Each sidecar gets its own bearer token, so the fake API can tell who called."""
    path.write_text(path.name)
