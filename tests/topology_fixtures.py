"""Session-wide Redis Cluster (3 masters, 3 replicas) and Sentinel group (master, replica, 3 sentinels)
on loopback, and ``store_url``: one test run on a single server, the cluster and the Sentinel group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.redis_topologies import RedisClusterGroup, SentinelGroup, wait_until

TOPOLOGIES = ["single", "cluster", "sentinel"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterGroup]:
    with RedisClusterGroup(masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelGroup]:
    with SentinelGroup(replicas=1, sentinels=3) as group:
        yield group


def _whole(group: RedisClusterGroup | SentinelGroup) -> str:
    """The group whole again (a node a previous test killed rejoins as a replica), keyspace empty."""
    for node in group.nodes:
        if not node.running:
            node.start()
    wait_until("the group did not heal", group.healthy)
    group.flushall()
    return group.url


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterGroup) -> str:
    return _whole(redis_cluster)


@pytest.fixture
def sentinel_url(redis_sentinel: SentinelGroup) -> str:
    return _whole(redis_sentinel)


@pytest.fixture(params=TOPOLOGIES)
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on one server, a Redis Cluster and a Sentinel group."""
    fixture = {"single": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}[request.param]
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]
