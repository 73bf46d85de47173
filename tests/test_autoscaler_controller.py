"""The scaling cycle against a real Redis stream and fake control APIs, driven by a fake clock.

The seed's scenario (0 → 150 → 500 → 10 entries) must produce exactly the replica counts the policy
implies, with the cooldown and the stabilization window, with and without a consumer group, on
Kubernetes and on Swarm; and every failure must hold instead of acting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway.autoscaler import controller as controller_module
from gateway.autoscaler.actuators import Actuator, build_actuator
from gateway.autoscaler.controller import Autoscaler, TargetController
from gateway.autoscaler.leader import AlwaysLeader
from gateway.autoscaler.signal import BacklogReader
from gateway.policy.autoscaler import AutoscalerConfig, TargetConfig
from tests.fakes.redis_server import RedisServer

if TYPE_CHECKING:
    from tests.autoscaler_fakes import FakeDocker, FakeKubernetes


STREAM = "tasks:stream"
POLL = 5.0


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NotLeader:
    is_leader = False

    async def confirm(self) -> bool:
        return False


class LosesLockBeforeActing(AlwaysLeader):
    async def confirm(self) -> bool:
        return False


def make_config(name: str, actuator: dict[str, Any], group: str = "", **target: Any) -> AutoscalerConfig:
    rules = {"min_replicas": 2, "max_replicas": 8, **target}
    return AutoscalerConfig(
        poll_interval_s=POLL,
        cooldown_s=60,
        stabilization_s=120,
        retry={"attempts": 2, "backoff_base_s": 0, "backoff_max_s": 0, "deadline_s": 5},
        targets=[TargetConfig(name=name, group=group, actuator=actuator, **rules)],
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Log events of the controller, whatever an earlier test configured (cached loggers ignore capture)."""
    with capture_logs() as captured:
        monkeypatch.setattr(controller_module, "log", structlog.get_logger("gateway.autoscaler"))
        yield captured


class Harness:
    """One controller, its clock, and the time-stepping the scenario needs."""

    def __init__(self, config: AutoscalerConfig, client: aioredis.Redis) -> None:
        self.clock = FakeClock()
        self.start = self.clock.now
        self.actuator = build_actuator(config.targets[0])
        self.controller = TargetController(
            config.targets[0], config, self.actuator, client, "llmgw:", self.clock
        )
        self.log: list[tuple[float, int, str]] = []

    async def run_until(self, t: float) -> None:
        """Cycle every poll interval until ``t`` seconds after the start (exclusive)."""
        while self.clock.now - self.start < t:
            decision = await self.controller.cycle(AlwaysLeader())
            assert decision is not None
            self.log.append((self.clock.now - self.start, decision.desired, decision.reason))
            self.clock.now += POLL

    def actions(self) -> list[tuple[float, int]]:
        return [(t, desired) for t, desired, reason in self.log if reason in ("above_high", "below_low")]

    async def close(self) -> None:
        await self.actuator.close()


class GroupQueue:
    """Agents in consumer group ``agents``: read (pending) and acknowledge (done) tasks."""

    def __init__(self, client: aioredis.Redis, xdel: bool) -> None:
        self.redis, self.xdel = client, xdel

    async def create(self) -> None:
        await self.redis.xgroup_create(STREAM, "agents", id="0", mkstream=True)

    async def add(self, count: int) -> list[bytes]:
        return [await self.redis.xadd(STREAM, {"task": str(i)}) for i in range(count)]

    async def deliver(self, count: int | None = None) -> list[bytes]:
        replies = await self.redis.xreadgroup("agents", "agent-1", {STREAM: ">"}, count=count)
        return [entry_id for _, entries in replies for entry_id, _ in entries]

    async def done(self, ids: list[bytes]) -> None:
        await self.redis.xack(STREAM, "agents", *ids)
        if self.xdel:
            await self.redis.xdel(STREAM, *ids)


EXPECTED_ACTIONS = [(10.0, 4), (70.0, 6), (130.0, 8), (320.0, 6), (380.0, 4), (440.0, 2)]


async def run_seed_scenario(harness: Harness, fill: Callable[[int], Any]) -> None:
    """0 entries, then 150, 500 and 10, switching at 10 s, 150 s and 200 s."""
    await fill(0)
    await harness.run_until(10)
    await fill(150)
    await harness.run_until(150)
    await fill(500)
    await harness.run_until(200)
    await fill(10)
    await harness.run_until(460)


async def test_seed_scenario_without_a_group_on_kubernetes(
    redis_client: aioredis.Redis, k8s: FakeKubernetes
) -> None:
    k8s.replicas[("default", "deployments", "agents")] = 2
    config = make_config("seed-k8s", {"type": "kubernetes", "api_url": k8s.url})
    harness = Harness(config, redis_client)
    ids: list[bytes] = []

    async def fill(n: int) -> None:
        while len(ids) < n:
            ids.append(await redis_client.xadd(STREAM, {"task": "t"}))
        if len(ids) > n:
            await redis_client.xdel(STREAM, *ids[: len(ids) - n])
            del ids[: len(ids) - n]
        assert await redis_client.xlen(STREAM) == n

    await run_seed_scenario(harness, fill)
    await harness.close()
    assert harness.actions() == EXPECTED_ACTIONS
    assert [n for _, n in k8s.patches] == [4, 6, 8, 6, 4, 2]
    reasons = [reason for t, _, reason in harness.log]
    assert reasons[:3] == ["at_min", "at_min", "above_high"]
    assert reasons[3:14] == ["cooldown"] * 11  # 15 s .. 65 s
    assert {reason for t, _, reason in harness.log if 135 <= t < 200} == {"at_max"}
    assert {reason for t, _, reason in harness.log if 200 <= t < 320} == {"stabilizing"}
    assert harness.log[-1][2] == "at_min"
    assert sample("autoscaler_scale_events_total", target="seed-k8s", direction="up") == 3
    assert sample("autoscaler_scale_events_total", target="seed-k8s", direction="down") == 3
    assert sample("autoscaler_current_replicas", target="seed-k8s") == 2
    assert sample("queue_length", stream=STREAM) == 10


@pytest.mark.parametrize("xdel", [False, True], ids=["ack", "ack+xdel"])
async def test_seed_scenario_with_a_group_on_swarm(
    redis_client: aioredis.Redis, docker: FakeDocker, xdel: bool
) -> None:
    docker.add_service("agents", 2)
    config = make_config("seed-swarm", {"type": "swarm", "socket": docker.socket_path}, group="agents")
    harness = Harness(config, redis_client)
    queue = GroupQueue(redis_client, xdel)
    await queue.create()
    reader = BacklogReader(redis_client)

    async def fill(n: int) -> None:
        if n == 150:
            await queue.add(150)
        elif n == 500:
            await queue.add(350)
            await queue.deliver(100)  # agents picked up 100: pending, still outstanding
            if xdel:  # a producer withdraws an undelivered task: Redis reports a null lag from now on
                await redis_client.xdel(STREAM, (await redis_client.xrevrange(STREAM, count=1))[0][0])
                await queue.add(1)
        elif n == 10:
            delivered = [*(await redis_client.xpending_range(STREAM, "agents", "-", "+", 1000))]
            pending = [row["message_id"] for row in delivered] + await queue.deliver()
            await queue.done(pending[10:])
        reading = await reader.read_stream(STREAM, "agents")
        assert reading.lag + reading.pending == n
        if xdel and n == 500:
            assert reading.source == "counted"

    await run_seed_scenario(harness, fill)
    await harness.close()
    assert harness.actions() == EXPECTED_ACTIONS
    assert [n for _, n in docker.updates] == [4, 6, 8, 6, 4, 2]
    if not xdel:
        assert (
            await redis_client.xlen(STREAM) == 500
        )  # acknowledged, not deleted: XLEN would never scale down


async def test_a_new_leader_honours_its_predecessors_cooldown(
    redis_client: aioredis.Redis, k8s: FakeKubernetes
) -> None:
    k8s.replicas[("default", "deployments", "agents")] = 2
    config = make_config("handover", {"type": "kubernetes", "api_url": k8s.url})
    await redis_client.xadd(STREAM, {"task": "t"})
    old, new = Harness(config, redis_client), Harness(config, redis_client)
    for _ in range(150):
        await redis_client.xadd(STREAM, {"task": "t"})
    await old.run_until(5)
    new.clock.now = old.clock.now + 25
    decision = await new.controller.cycle(AlwaysLeader())
    assert decision is not None and decision.reason == "cooldown"
    new.clock.now += 35
    decision = await new.controller.cycle(AlwaysLeader())
    assert decision is not None and (decision.reason, decision.desired) == ("above_high", 6)
    await old.close()
    await new.close()


async def test_manual_changes_are_respected_inside_the_bounds(
    redis_client: aioredis.Redis, k8s: FakeKubernetes
) -> None:
    key = ("default", "deployments", "agents")
    config = make_config("bounds", {"type": "kubernetes", "api_url": k8s.url})
    harness = Harness(config, redis_client)
    for _ in range(50):  # in band: only the bounds can move the target
        await redis_client.xadd(STREAM, {"task": "t"})
    for manual, expected in [(20, (8, "above_max")), (5, (5, "in_band")), (0, (2, "below_min"))]:
        k8s.replicas[key] = manual  # an operator scales by hand, even inside our cooldown
        decision = await harness.controller.cycle(AlwaysLeader())
        assert decision is not None and (decision.desired, decision.reason) == expected
        harness.clock.now += POLL
    await harness.close()
    assert k8s.patches == [("agents", 8), ("agents", 2)]


async def test_redis_outage_holds_and_restarts_the_stabilization_window(
    redis_server: RedisServer, redis_client: aioredis.Redis, k8s: FakeKubernetes, logs: list[dict[str, Any]]
) -> None:
    k8s.replicas[("default", "deployments", "agents")] = 6
    harness = Harness(make_config("outage", {"type": "kubernetes", "api_url": k8s.url}), redis_client)
    await harness.run_until(115)  # low (empty stream) for 115 s of a 120 s window
    before = sample("autoscaler_errors_total", kind="redis")
    redis_server.stop()
    try:
        assert await harness.controller.cycle(AlwaysLeader()) is None
        assert sample("autoscaler_errors_total", kind="redis") == before + 1
        [event] = [e for e in logs if e["event"] == "autoscaler.hold"]
        assert event["kind"] == "redis" and "cannot read the backlog" in event["reason"]
    finally:
        redis_server.start()
    harness.clock.now += POLL
    harness.start = harness.clock.now
    await harness.run_until(120)
    await harness.close()
    assert {reason for _, _, reason in harness.log} == {"stabilizing"}
    assert k8s.patches == []


async def test_target_errors_hold_without_recording_a_cooldown(
    redis_client: aioredis.Redis, k8s: FakeKubernetes
) -> None:
    k8s.replicas[("default", "deployments", "agents")] = 2
    harness = Harness(make_config("unreadable", {"type": "kubernetes", "api_url": k8s.url}), redis_client)
    for _ in range(150):
        await redis_client.xadd(STREAM, {"task": "t"})
    read_errors = sample("autoscaler_errors_total", kind="target_read")
    write_errors = sample("autoscaler_errors_total", kind="target_write")
    k8s.fail_get = [500, 503]  # both attempts fail
    assert await harness.controller.cycle(AlwaysLeader()) is None
    k8s.fail_patch = [502, 403]  # a transient error, then a permanent one
    assert await harness.controller.cycle(AlwaysLeader()) is None
    assert sample("autoscaler_errors_total", kind="target_read") == read_errors + 1
    assert sample("autoscaler_errors_total", kind="target_write") == write_errors + 1
    assert await redis_client.get("llmgw:autoscaler:last_scale:unreadable") is None
    decision = await harness.controller.cycle(AlwaysLeader())  # the next cycle acts at once
    await harness.close()
    assert decision is not None and decision.desired == 4
    assert k8s.patches == [("agents", 4)]


class SlowRead(Actuator):
    """A target whose read takes longer than a poll interval (on the fake clock)."""

    description = "slow"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    async def get_replicas(self) -> int:
        self.clock.now += POLL + 1
        return 2

    async def set_replicas(self, replicas: int) -> None:
        raise AssertionError("must not act on a stale reading")


async def test_a_stale_reading_is_not_acted_on(redis_client: aioredis.Redis) -> None:
    config = make_config("stale", {"type": "dry-run"})
    harness = Harness(config, redis_client)
    harness.controller.actuator = SlowRead(harness.clock)
    for _ in range(150):
        await redis_client.xadd(STREAM, {"task": "t"})
    before = sample("autoscaler_errors_total", kind="stale")
    assert await harness.controller.cycle(AlwaysLeader()) is None
    assert sample("autoscaler_errors_total", kind="stale") == before + 1


async def test_only_the_leader_reads_and_acts(redis_client: aioredis.Redis, k8s: FakeKubernetes) -> None:
    k8s.replicas[("default", "deployments", "agents")] = 2
    config = make_config("standby", {"type": "kubernetes", "api_url": k8s.url})
    for _ in range(150):
        await redis_client.xadd(STREAM, {"task": "t"})
    actuator = build_actuator(config.targets[0])
    standby = Autoscaler(config, redis_client, {"standby": actuator}, NotLeader(), "llmgw:")
    assert await standby.run_cycle() == {}
    assert k8s.gets == 0
    losing = Autoscaler(config, redis_client, {"standby": actuator}, LosesLockBeforeActing(), "llmgw:")
    before = sample("autoscaler_errors_total", kind="leadership")
    assert await losing.run_cycle() == {"standby": None}
    await actuator.close()
    assert sample("autoscaler_errors_total", kind="leadership") == before + 1
    assert k8s.patches == []


async def test_each_decision_is_one_log_event_saying_why(
    redis_client: aioredis.Redis, logs: list[dict[str, Any]]
) -> None:
    harness = Harness(make_config("logged", {"type": "dry-run"}), redis_client)
    for _ in range(150):
        await redis_client.xadd(STREAM, {"task": "t"})
    await harness.run_until(10)
    decisions = [e for e in logs if e["event"] == "autoscaler.decision"]
    assert [(e["reason"], e["acted"], e["current"], e["desired"]) for e in decisions] == [
        ("above_high", True, 2, 4),
        ("cooldown", False, 4, 4),
    ]
    assert decisions[0]["backlog"] == 150 and decisions[0]["streams"] == {STREAM: [150, "none"]}
