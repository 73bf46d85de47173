"""Which Redis the gateway talks to, read from ``store.url`` / ``store.mode``, and the client for it.

One server (``redis://``, ``rediss://``, ``unix://``), Redis Cluster (``redis+cluster://`` or ``mode:
cluster``; any node, or several, comma-separated) or Sentinel (``redis+sentinel://S1:26379,S2:26379/MASTER``).
Every client retries connection errors and timeouts with jittered exponential backoff and health-checks
idle connections, so a restart or failover costs the outage itself, not one failure per pooled
connection. Cluster clients follow MOVED/ASK and re-read the slot map; Sentinel clients ask the
sentinels for the master again whenever a connection fails or a demoted master refuses a write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.retry
import redis.sentinel
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff

if TYPE_CHECKING:
    from gateway.policy.core import StoreConfig

Mode = Literal["single", "cluster", "sentinel"]
Client = aioredis.Redis | RedisCluster
"""What callers hold: the plain and the cluster client answer the same commands."""

_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class Topology:
    """``store.url`` and ``store.*`` read once: where the servers are and how to reach them."""

    mode: Mode
    nodes: list[tuple[str, int]] = field(default_factory=list)
    """Cluster startup nodes, or the sentinels; empty for one server (``url`` says where)."""
    url: str = ""
    tls: bool = False
    db: int = 0
    master: str = ""
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        """The topology for logs and ``/readyz``, without credentials."""
        where = ",".join(f"{h}:{p}" for h, p in self.nodes) if self.nodes else _without_auth(self.url)
        return f"{self.mode} {where}" + (f" master {self.master}" if self.master else "")


def parse(config: StoreConfig) -> Topology:
    """Read ``config`` into a topology; ``ValueError`` names what is wrong (a policy error at start)."""
    if not config.url:
        raise ValueError(f"store.mode '{config.mode}' needs store.url (empty means the memory store)")
    parts = urlsplit(config.url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"must be a URL starting with one of {known}, or empty for memory")
    mode, tls = _SCHEMES[scheme]
    if config.mode != "auto":
        if mode != "single" and mode != config.mode:
            raise ValueError(f"store.mode '{config.mode}' contradicts the URL scheme {scheme}://")
        mode = config.mode
    if scheme == "unix" and mode != "single":
        raise ValueError(
            "a unix:// socket is one server: Redis Cluster and Sentinel need host:port addresses"
        )
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, secret = userinfo.partition(":")
    username = config.username or unquote(user) or None
    password = config.password or unquote(secret) or None
    path = [p for p in parts.path.split("/") if p]
    db = int(parse_qs(parts.query).get("db", ["0"])[0])
    if mode == "single":
        if scheme != "unix" and path:
            db = _db(path[0])
        return Topology("single", url=config.url, tls=tls, db=db, username=username, password=password)
    default_port = SENTINEL_PORT if mode == "sentinel" else 6379
    nodes = [_address(h, default_port) for h in hosts.split(",") if h] if hosts else []
    nodes += [_address(h, default_port) for h in config.sentinels if mode == "sentinel"]
    if not nodes:
        raise ValueError(f"store.url names no {mode} address (host:port)")
    if mode == "cluster":
        if path and _db(path[0]) != 0:
            raise ValueError("Redis Cluster has only database 0")
        return Topology("cluster", nodes, tls=tls, username=username, password=password)
    master = config.sentinel_master or (path[0] if path else "")
    if not master:
        raise ValueError(
            "Sentinel needs the master's name: redis+sentinel://HOST:26379/NAME or store.sentinel_master"
        )
    if len(path) > 1:
        db = _db(path[1])
    return Topology("sentinel", nodes, tls=tls, db=db, master=master, username=username, password=password)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool, made to wait for a free connection (``timeout``) instead of failing at once
    when every connection is busy, like the pool of one server."""


class _SyncBlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The same for the blocking client (``llm-gateway report``)."""


@dataclass(frozen=True)
class _Flavour:
    """The client classes of one redis-py API: asyncio (the gateway) or blocking (offline commands)."""

    redis: Any
    pool: Any
    cluster: Any
    node: Any
    sentinel: Any
    sentinel_pool: Any
    retry: Any


_ASYNC = _Flavour(
    aioredis.Redis,
    aioredis.BlockingConnectionPool,
    RedisCluster,
    ClusterNode,
    Sentinel,
    _BlockingSentinelPool,
    Retry,
)
_SYNC = _Flavour(
    redis.Redis,
    redis.BlockingConnectionPool,
    redis.cluster.RedisCluster,
    redis.cluster.ClusterNode,
    redis.sentinel.Sentinel,
    _SyncBlockingSentinelPool,
    redis.retry.Retry,
)


def connect(config: StoreConfig) -> Client:
    """A pooled asyncio client for the configured topology, retrying what is safe to retry.

    Every Redis command the gateway sends is safe to send twice: reads, SET/DEL, the budget scripts
    (idempotent per reservation) and lock scripts (owner token); a repeated XADD after a timeout at
    worst writes one log line twice."""
    return _connect(config, _ASYNC)  # type: ignore[no-any-return]


def connect_sync(config: StoreConfig) -> redis.Redis | redis.cluster.RedisCluster:
    """A blocking client for the same topology, for offline commands (reading the ledger)."""
    return _connect(config, _SYNC)  # type: ignore[no-any-return]


def is_store_url(text: str) -> bool:
    """Whether ``text`` is a store URL (rather than, say, a file path)."""
    return urlsplit(text).scheme.lower() in _SCHEMES


def _connect(config: StoreConfig, api: _Flavour) -> Any:
    topo = parse(config)
    backoff = ExponentialWithJitterBackoff(cap=config.retry_backoff_max_s, base=0.05)
    common: dict[str, Any] = {
        "username": topo.username,
        "password": topo.password,
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.socket_timeout_s,
        "health_check_interval": config.health_check_interval_s,
        "retry": api.retry(backoff, config.retries),
    }
    tls = _tls_options(config) if topo.tls else {}
    if topo.mode == "cluster":
        return api.cluster(
            startup_nodes=[api.node(h, p) for h, p in topo.nodes],
            max_connections=config.max_connections,
            require_full_coverage=True,
            **common,
            **tls,
            ssl=topo.tls,
        )
    if topo.mode == "sentinel":
        sentinel_auth = {
            "username": config.sentinel_username or None,
            "password": config.sentinel_password or None,
            "socket_timeout": config.socket_timeout_s,
            "socket_connect_timeout": config.socket_timeout_s,
        }
        if topo.tls:
            sentinel_auth.update(tls, ssl=True)
        sentinel = api.sentinel(topo.nodes, sentinel_kwargs=sentinel_auth, **common)
        return sentinel.master_for(
            topo.master,
            connection_pool_class=api.sentinel_pool,
            db=topo.db,
            max_connections=config.max_connections,
            timeout=config.socket_timeout_s,
            **tls,
            ssl=topo.tls,
        )
    pool = api.pool.from_url(
        _without_auth(config.url),  # the credentials are in ``common`` (the URL's, or the config's instead)
        max_connections=config.max_connections,
        timeout=config.socket_timeout_s,
        **{k: v for k, v in common.items() if v is not None},
        **tls,
    )
    return api.redis.from_pool(pool)


def _tls_options(config: StoreConfig) -> dict[str, Any]:
    tls = config.tls
    options: dict[str, Any] = {}
    if tls.ca_file:
        options["ssl_ca_certs"] = tls.ca_file
    if tls.cert_file:
        options["ssl_certfile"] = tls.cert_file
    if tls.key_file:
        options["ssl_keyfile"] = tls.key_file
    if not tls.verify:
        options["ssl_cert_reqs"] = "none"
        options["ssl_check_hostname"] = False
    return options


def _address(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or (":" in host and not host.endswith("]")):  # no port, or a bare IPv6 address
        return text.strip("[]"), default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"'{text}' is not HOST:PORT") from None


def _db(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a database number") from None


def _without_auth(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
