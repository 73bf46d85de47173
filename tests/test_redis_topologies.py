"""One server, Redis Cluster and Sentinel: the same cache, budget, singleflight, log and lock behaviour on
each (``store_url`` runs a test on all three), scripts that come back after a flush, and readiness
that says what is wrong. Riding through faults is in tests/test_redis_faults.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from redis.asyncio.connection import SSLConnection

from gateway.autoscaler.leader import LeaderLock
from gateway.autoscaler.signal import BacklogReader
from gateway.ledger.sinks import StreamSink
from gateway.policy import Policy, load_policy
from gateway.policy.core import StoreConfig, StoreTls
from gateway.policy.loader import ConfigError
from gateway.reporting.source import LedgerData, Selection, read_ledger
from gateway.router.log import RoutingLog
from gateway.store import open_redis
from gateway.store.topology import connect, parse
from tests import test_cache_e2e as cache_tests
from tests.conftest import base_policy
from tests.fakes.redis_server import RedisServer
from tests.fakes.redis_topologies import RedisClusterGroup, SentinelGroup, cluster_port, wait_until
from tests.fakes.upstream import FakeUpstream
from tests.test_budget_e2e import COST, _burst, budgets_report, chat, reported_usage, sprint
from tests.test_budget_ledger import BUCKET, ask, charge
from tests.test_cache_e2e import cached_policy
from tests.test_cache_e2e import chat as cache_chat
from tests.test_redis_faults import AUTH


def readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def test_every_topology_is_ready(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], store_url: str
) -> None:
    url = start_gateway(base_policy(fake_upstream.url, store={"url": store_url}))  # type: ignore[attr-defined]
    response = readyz(url)
    assert response.status_code == 200, response.text
    assert response.json()["problems"] == []


def test_cache_hits_and_team_isolation(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], store_url: str
) -> None:
    url = start_gateway(cached_policy(fake_upstream, store_url))
    prompts = [[{"role": "user", "content": f"spread over the slots {i}"}] for i in range(8)]
    assert [cache_chat(url, messages=m).headers["X-Cache"] for m in prompts] == ["MISS"] * 8
    assert [cache_chat(url, messages=m).headers["X-Cache"] for m in prompts] == ["HIT"] * 8
    assert cache_chat(url, key="gw-same-team").headers["X-Cache"] == "MISS"
    assert cache_chat(url, key="gw-same-team").headers["X-Cache"] == "HIT", "same team shares"
    assert cache_chat(url, key="gw-other-team").headers["X-Cache"] == "MISS", "another team never sees it"
    assert fake_upstream.count("/v1/chat/completions") == 10


def test_singleflight_across_two_gateways(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], store_url: str
) -> None:
    cache_tests.test_singleflight_across_two_gateways(fake_upstream, start_gateway, store_url)


def test_two_gateways_share_one_budget(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], store_url: str
) -> None:
    total = 60 * COST + 10
    policy = base_policy(fake_upstream.url, store={"url": store_url}, budgets=sprint(total))  # type: ignore[attr-defined]
    urls = [start_gateway(policy), start_gateway(policy)]
    fake_upstream.latency_s = 0.05
    statuses = [r.status_code for r in asyncio.run(_burst(urls, 120, chat()))]
    assert statuses.count(200) == 60 and statuses.count(429) == 60, "0 overspend, 0 refused too early"
    line = budgets_report(urls[0])["sprint"]
    assert line["used"] == reported_usage(fake_upstream) == 60 * COST
    assert line["reserved"] == 0


async def test_logs_streams_and_locks(store_url: str) -> None:
    store = open_redis(StoreConfig(url=store_url))
    try:
        routing = RoutingLog(store, "model_routing_log", 100)
        for i in range(3):
            routing.record({"chosen": f"m{i}", "tokens": i})
        await routing.drain()
        assert sorted(e["chosen"] for e in await routing.read(10)) == ["m0", "m1", "m2"]
        await StreamSink(store, "llmgw:ledger", 100).write([b'{"n": 1}', b'{"n": 2}'])
        assert [json.loads(e["record"])["n"] for e in await store.read_log("llmgw:ledger", 5)] == [2, 1]
        reading = await BacklogReader(store.redis).read_stream("llmgw:ledger", "")  # type: ignore[arg-type]
        assert reading.length == 2
        first, second = (LeaderLock(store.redis, "llmgw:autoscaler:leader", 5) for _ in range(2))  # type: ignore[arg-type]
        assert await first.try_acquire() == 0
        assert await second.try_acquire() > 0, "one leader at a time"
        assert await first.renew() and await first.release()
        assert await second.try_acquire() == 0
        await store.set("llmgw:cache:a", b"1")
        await store.set("llmgw:cache:b", b"2")
        assert await store.delete_matching("llmgw:cache:") == 2, "every node scanned"
    finally:
        await store.close()


async def test_a_repeated_reserve_or_commit_counts_once(store_url: str) -> None:
    """What a retried call after a lost answer does: the ledger counts each hold id once."""
    store = open_redis(StoreConfig(url=store_url))
    ledger = store.budget_ledger("t:")
    try:
        for _ in range(2):
            verdict = await ledger.reserve(BUCKET, ask("h1"))
            assert verdict.status == "ok" and verdict.balance.sprint_reserved == 40
        for _ in range(2):
            settled = await ledger.commit(BUCKET, charge("h1", 7))
            assert settled.balance.sprint_used == 7 and settled.balance.sprint_reserved == 0
    finally:
        await store.close()


def test_the_ledger_is_written_and_read_back(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], store_url: str
) -> None:
    """Requests leave ledger records in the stream and heartbeats in their keys; ``report`` reads both."""
    policy = base_policy(fake_upstream.url, store={"url": store_url}, ledger={"enabled": True})  # type: ignore[attr-defined]
    url = start_gateway(policy)
    for _ in range(3):
        assert httpx.post(f"{url}/v1/chat/completions", json=chat(), headers=AUTH).status_code == 200

    def written() -> LedgerData:
        return read_ledger(store_url, Policy.model_validate(policy), Selection(), show_progress=False)

    wait_until("the ledger was not written", lambda: len(written().records) == 3)
    assert any(span.component == "gateway" for span in written().spans), "the heartbeat is read back"


def _nodes(store_url: str, cluster: RedisClusterGroup, group: SentinelGroup) -> list[redis.Redis]:
    """A client for every running data node of ``store_url``'s topology."""
    mode = parse(StoreConfig(url=store_url)).mode
    servers = {"cluster": cluster.nodes, "sentinel": group.servers}.get(mode)
    if servers is None:
        return [redis.Redis.from_url(store_url)]
    return [redis.Redis(port=server.port) for server in servers if server.running]


def _flush_scripts(nodes: list[redis.Redis]) -> None:
    for node in nodes:
        node.script_flush()


async def test_scripts_come_back_after_a_flush(
    store_url: str, redis_cluster: RedisClusterGroup, redis_sentinel: SentinelGroup
) -> None:
    """A restarted or promoted node has no scripts: NOSCRIPT makes the client load them again, and the
    readiness check loads them on every primary."""
    store = open_redis(StoreConfig(url=store_url))
    ledger = store.budget_ledger("t:")
    nodes = _nodes(store_url, redis_cluster, redis_sentinel)
    try:
        assert (await ledger.reserve(BUCKET, ask("h1"))).status == "ok"
        _flush_scripts(nodes)
        assert (await ledger.reserve(BUCKET, ask("h2"))).balance.sprint_reserved == 80
        _flush_scripts(nodes)
        assert await store.check() == []
        shas = [script.sha for script in store._scripts]
        primaries = [n for n in nodes if n.info("replication")["role"] == "master"]
        assert primaries and all(all(n.script_exists(*shas)) for n in primaries)
    finally:
        await store.close()
        for node in nodes:
            node.close()


# --- readiness that says what is wrong -----------------------------------------------------------------


async def _problems(url: str, **config: Any) -> list[str]:
    store = open_redis(StoreConfig(url=url, retries=0, socket_timeout_s=0.5, **config))
    try:
        return await store.check()
    finally:
        await store.close()


async def test_a_cluster_node_named_as_one_server_is_not_ready(redis_cluster: RedisClusterGroup) -> None:
    plain = f"redis://127.0.0.1:{redis_cluster.masters[0].port}"
    (problem,) = await _problems(plain)
    assert "Redis Cluster node" in problem and "store.mode: cluster" in problem
    assert await _problems(plain, mode="cluster") == []


async def test_a_cluster_with_unserved_slots_is_not_ready() -> None:
    flags = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    with RedisServer(cluster_port(), extra=flags) as node:
        with redis.Redis(port=node.port) as c:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
        (problem,) = await _problems(f"redis+cluster://127.0.0.1:{node.port}")
    assert "8192 of 16384" in problem


async def test_sentinel_without_that_master_is_not_ready(redis_sentinel: SentinelGroup) -> None:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinel.sentinels)
    (problem,) = await _problems(f"redis+sentinel://{hosts}/no-such-master")
    assert "no sentinel knows a master named 'no-such-master'" in problem


async def test_a_replica_named_as_one_server_is_not_ready(redis_sentinel: SentinelGroup) -> None:
    master = redis_sentinel.master()
    replica = next(s for s in redis_sentinel.servers if s is not master and s.running)
    (problem,) = await _problems(f"redis://127.0.0.1:{replica.port}")
    assert "read-only replica" in problem


def test_readyz_is_503_with_the_reason_while_the_store_is_down(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    with RedisServer() as server:
        store = {"url": server.url, "retries": 0, "socket_timeout_s": 0.5}
        url = start_gateway(base_policy(fake_upstream.url, store=store))  # type: ignore[attr-defined]
        assert readyz(url).status_code == 200
        server.stop()
        response = readyz(url)
        assert response.status_code == 503
        body = response.json()
        assert body["store"] is False and "single redis://127.0.0.1" in body["problems"][0]
        metrics = httpx.get(f"{url}/metrics").text
        assert "gateway_store_up 0.0" in metrics
        assert 'gateway_store_operation_duration_seconds_count{operation="check"}' in metrics


@pytest.mark.parametrize(
    ("url", "mode", "wanted"),
    [
        ("redis://h:1/0", "auto", ("single", [], "")),
        ("redis://h:7000", "cluster", ("cluster", [("h", 7000)], "")),
        ("rediss+cluster://u:p@a:7000,b:7001", "auto", ("cluster", [("a", 7000), ("b", 7001)], "")),
        (
            "redis+sentinel://a,b:26380/mymaster/2",
            "auto",
            ("sentinel", [("a", 26379), ("b", 26380)], "mymaster"),
        ),
    ],
)
def test_urls_name_the_topology(url: str, mode: str, wanted: tuple[str, list[Any], str]) -> None:
    topo = parse(StoreConfig(url=url, mode=mode))  # type: ignore[arg-type]
    assert (topo.mode, topo.nodes, topo.master) == wanted


def test_credentials_and_tls_come_from_url_or_config() -> None:
    topo = parse(StoreConfig(url="rediss+sentinel://gw:s%40cret@a:26379/m/3"))
    assert (topo.username, topo.password, topo.tls, topo.db) == ("gw", "s@cret", True, 3)
    topo = parse(StoreConfig(url="redis://a:1", username="acl-user", password="pw"))
    assert (topo.username, topo.password) == ("acl-user", "pw")
    assert "pw" not in topo.describe()


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ({"url": "http://x"}, "redis+sentinel://"),
        ({"url": "redis+sentinel://a:26379"}, "master's name"),
        ({"url": "unix:///tmp/r.sock", "mode": "cluster"}, "unix://"),
        ({"url": "redis+cluster://a:1", "mode": "sentinel"}, "contradicts"),
        ({"mode": "cluster"}, "needs store.url"),
    ],
)
def test_bad_store_settings_are_refused_at_start(tmp_path: Path, store: dict[str, str], message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(base_policy("http://u", store=store)))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert info.value.path == "store.url" and message in str(info.value)


async def test_acl_users_and_passwords() -> None:
    with RedisServer(password="admin-secret") as server:
        with redis.Redis(port=server.port, password="admin-secret") as admin:
            admin.execute_command("ACL", "SETUSER", "gw", "on", ">gw-secret", "~*", "+@all")
        plain = f"redis://127.0.0.1:{server.port}"
        assert await _problems(plain, username="gw", password="gw-secret") == []
        assert await _problems(f"redis://gw:gw-secret@127.0.0.1:{server.port}") == []
        stale = f"redis://gw:old-secret@127.0.0.1:{server.port}"
        assert await _problems(stale, password="gw-secret") == [], "the policy's password wins"
        (problem,) = await _problems(plain, username="gw", password="wrong")
        assert "gw-secret" not in problem and "wrong" not in problem


@pytest.mark.parametrize(
    "url", ["rediss://h:6380/0", "rediss+sentinel://h:26379/m", "rediss+cluster://h:6380"]
)
def test_tls_settings_reach_every_topology(url: str) -> None:
    """The bundled server has no TLS, so this checks what the client is built with (no connection)."""
    tls = StoreTls(ca_file="/ca.pem", cert_file="/client.pem", key_file="/client.key")
    client = connect(StoreConfig(url=url, tls=tls))
    cluster = "cluster" in url
    pools = list(client.nodes_manager.startup_nodes.values()) if cluster else [client.connection_pool]
    for pool in pools:
        assert issubclass(pool.connection_class, SSLConnection)
        kwargs = pool.connection_kwargs
        assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
            "/ca.pem",
            "/client.pem",
            "/client.key",
        )
