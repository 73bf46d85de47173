"""Throwaway Redis Cluster and Sentinel groups on loopback, from the same binary as ``RedisServer``.

A cluster is built the way an operator would, without ``redis-cli``: nodes started with
``--cluster-enabled yes``, slots split with ``CLUSTER ADDSLOTSRANGE``, joined with ``CLUSTER MEET``,
replicas attached with ``CLUSTER REPLICATE``. A Sentinel group is one master, its replicas and three
sentinels (the server binary with ``--sentinel``) with a one-second down-after, so a failover takes
about two seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.fakes.redis_server import RedisServer, free_port

SLOTS = 16384
BUS_OFFSET = 10000
"""A cluster node also listens on its port + 10000 (the cluster bus)."""


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout} s")


class RedisClusterGroup:
    """``masters`` primaries sharing the 16384 slots, each with ``replicas`` replicas."""

    def __init__(self, masters: int = 3, replicas: int = 0, password: str | None = None) -> None:
        flags = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        flags += ["--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "yes"]
        self.masters = [RedisServer(cluster_port(), password, flags) for _ in range(masters)]
        self.replicas = [RedisServer(cluster_port(), password, flags) for _ in range(masters * replicas)]
        self.password = password

    @property
    def nodes(self) -> list[RedisServer]:
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.masters)
        return f"redis+cluster://{auth}{hosts}"

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.password, decode_responses=True)

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        first = self.client(self.masters[0])
        share = SLOTS // len(self.masters)
        for i, master in enumerate(self.masters):
            last = SLOTS - 1 if i == len(self.masters) - 1 else (i + 1) * share - 1
            with self.client(master) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        for i, replica in enumerate(self.replicas):
            master_id = self.client(self.masters[i % len(self.masters)]).execute_command("CLUSTER", "MYID")
            with self.client(replica) as c:

                def learned(c: redis.Redis = c, m: str = master_id) -> bool:
                    return m in c.execute_command("CLUSTER", "NODES")

                wait_until("the replica did not learn its master", learned)
                c.execute_command("CLUSTER", "REPLICATE", master_id)
        first.close()
        wait_until("the cluster did not come up", self.healthy)
        return self

    def healthy(self) -> bool:
        """Every node sees every slot served and every node joined."""
        for node in self.nodes:
            with self.client(node) as c:
                text = c.execute_command("CLUSTER", "INFO")
                info = dict(line.split(":", 1) for line in text.split() if ":" in line)
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.nodes):
                    return False
                if int(info["cluster_slots_ok"]) != SLOTS:
                    return False
        for node in self.nodes:  # every replica in sync, so it can take over from its master
            with self.client(node) as c:
                replication = c.info("replication")
                if replication["role"] != "master" and replication.get("master_link_status") != "up":
                    return False
        return True

    def serving(self) -> bool:
        """Every running node sees all slots served (after a failover, without the dead node)."""
        for node in self.nodes:
            if node.running:
                with self.client(node) as c:
                    text = c.execute_command("CLUSTER", "INFO")
                    if "cluster_state:ok" not in text or f"cluster_slots_ok:{SLOTS}" not in text:
                        return False
        return True

    def kill_master_of(self, key: str) -> RedisServer:
        """SIGKILL the master serving ``key``; returns it (``start()`` it again to rejoin as a replica)."""
        master = self.master_of(key)
        master.kill()
        return master

    def wait_failover(self, old: RedisServer, key: str, timeout: float = 20.0) -> RedisServer:
        """Block until a replica of ``old`` serves ``key``'s slot and every live node sees all slots
        served (right after a kill the others still do, until they notice); returns the new master."""
        wait_until("no replica took over", lambda: self.master_of(key) is not old and self.serving(), timeout)
        return self.master_of(key)

    def master_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        node = next(n for n in self.nodes if n.running)
        with self.client(node) as c:
            slot = c.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        raise RuntimeError(f"no node serves slot {slot}")

    def flushall(self) -> None:
        for master in self.nodes:
            if master.running:
                with self.client(master) as c:
                    if c.info("replication")["role"] == "master":
                        c.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class SentinelServer(RedisServer):
    """A sentinel watching one master (the server binary run with ``--sentinel``)."""

    def __init__(self, master_name: str, master_port: int, password: str | None = None) -> None:
        super().__init__()
        self.master_name, self.master_port, self.master_password = master_name, master_port, password

    def _args(self) -> list[str]:
        conf = Path(self._dir) / "sentinel.conf"  # sentinels rewrite their config file: it must be writable
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self._dir}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 2",
            f"sentinel down-after-milliseconds {self.master_name} 1000",
            f"sentinel failover-timeout {self.master_name} 4000",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.master_password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.master_password}")
        if not conf.exists():
            conf.write_text("\n".join(lines) + "\n")
        return [self.binary, str(conf), "--sentinel", "--loglevel", "warning", "--daemonize", "no"]


class SentinelGroup:
    """One master, ``replicas`` replicas and ``sentinels`` sentinels (quorum 2)."""

    master_name = "gw-master"

    def __init__(self, replicas: int = 1, sentinels: int = 3, password: str | None = None) -> None:
        self.password = password
        first = RedisServer(password=password)
        self.servers = [first]
        self.servers += [
            RedisServer(password=password, extra=["--replicaof", "127.0.0.1", str(first.port)])
            for _ in range(replicas)
        ]
        self.sentinels = [SentinelServer(self.master_name, first.port, password) for _ in range(sentinels)]

    @property
    def nodes(self) -> list[RedisServer]:
        """The data servers (not the sentinels)."""
        return self.servers

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{self.master_name}"

    def start(self) -> SentinelGroup:
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until("the Sentinel group did not form", self.healthy)
        return self

    def healthy(self) -> bool:
        """Every sentinel agrees on the master, knows its replicas and the other sentinels, and every
        running replica is in sync."""
        port = self.master().port
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True) as s:
                state = s.sentinel_master(self.master_name)
                if int(state["port"]) != port or "s_down" in state["flags"] or "o_down" in state["flags"]:
                    return False
                others = int(state["num-other-sentinels"])
                if others != len(self.sentinels) - 1 or int(state["num-slaves"]) < len(self.servers) - 1:
                    return False
        for server in self.servers:
            if server.running and server.port != port:
                with self.client(server) as c:
                    if c.info("replication").get("master_link_status") != "up":
                        return False
        return True

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, password=self.password, decode_responses=True)

    def master(self) -> RedisServer:
        """The server the sentinels name as master now."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            with redis.Redis(port=sentinel.port, decode_responses=True) as s:
                _, port = s.sentinel_get_master_addr_by_name(self.master_name)
            return next(server for server in self.servers if server.port == int(port))
        raise RuntimeError("no sentinel is running")

    def kill_master(self) -> RedisServer:
        """SIGKILL the master; returns it (``start()`` it again to have it rejoin as a replica)."""
        master = self.master()
        master.kill()
        return master

    def wait_failover(self, old: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Block until the sentinels promoted a replica in place of ``old``; returns the new master."""
        wait_until("no replica was promoted", lambda: self.master() is not old, timeout)
        new = self.master()
        with self.client(new) as c:
            wait_until(
                "the new master did not take writes", lambda: c.info("replication")["role"] == "master"
            )
        return new

    def flushall(self) -> None:
        with self.client(self.master()) as c:
            c.flushall()

    def close(self) -> None:
        for node in [*self.sentinels, *self.servers]:
            node.close()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
