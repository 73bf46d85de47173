"""Fixtures shared by the whole suite: a real Redis server started by the suite itself, a fake provider,
and gateways built from policy dicts, driven by the official openai SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from gateway.policy import Policy
from gateway.server import create_app
from tests.fakes.background import BackgroundServer
from tests.fakes.redis_server import RedisServer, free_port
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default ledger file's directory for the whole suite (and the gateways it starts), never the
    user's own ``~/.local/state``."""
    with pytest.MonkeyPatch.context() as env:
        path = tmp_path_factory.mktemp("state")
        env.setenv("GATEWAY_STATE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis-compatible server for the session, on a free loopback port."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session server's URL, with an empty keyspace for this test."""
    if redis_server._proc is None:  # a previous test stopped it to simulate an outage
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


# Fixtures of the autoscaler tests (fake Kubernetes and Docker APIs, a Redis client).
pytest_plugins = ["tests.autoscaler_fakes", "tests.topology_fixtures"]

PROVIDER_KEY = "sk-provider-SECRET-0123456789abcdef"
GATEWAY_KEY = "gw-agent-key-1"
ADMIN_KEY = "gw-admin-key"


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A fake OpenAI-compatible provider on loopback that checks the gateway's provider key."""
    fake = FakeUpstream(expected_key=PROVIDER_KEY)
    server = BackgroundServer(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake
    server.stop()


def base_policy(upstream_url: str, **sections: Any) -> dict[str, Any]:
    """A test policy: one provider (the fake), a few models, one gateway key; sections override."""
    policy: dict[str, Any] = {
        "server": {"admin_key": ADMIN_KEY, "drain_timeout_s": 5},
        # Off unless a test is about caching: most tests count the calls that reach the provider.
        "cache": {"enabled": False},
        # Off unless a test is about the ledger: it would write a ledger file in the state directory.
        "ledger": {"enabled": False},
        # Off unless a test is about the brake: many tests send one request again and again.
        "limits": {"brake": {"enabled": False}},
        "auth": {"keys": [{"key": GATEWAY_KEY, "agent": "agent-1", "team": "backend"}]},
        "providers": {
            "openai": {
                "base_url": upstream_url + "/v1",
                "api_key": PROVIDER_KEY,
                "timeout_s": 5,
                "retry": {"attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "deadline_s": 5},
            }
        },
        "models": {
            "gpt-4o-mini": {"provider": "openai", "tier": "small"},
            "gpt-4.1": {"provider": "openai", "tier": "large", "fallbacks": ["gpt-4o-mini"]},
            "text-embedding-3-small": {"provider": "openai", "tier": "small"},
        },
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(policy.get(name), dict):
            policy[name] = {**policy[name], **value}
        else:
            policy[name] = value
    return policy


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., str]]:
    """Start a gateway (in a background thread) for a policy dict; returns its base URL."""
    servers: list[BackgroundServer] = []

    def start(policy: dict[str, Any]) -> str:
        server = BackgroundServer(
            create_app(Policy.model_validate(policy)), handler_cancellation=True
        ).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> str:
    """A gateway with the test policy in front of the fake upstream."""
    return start_gateway(base_policy(fake_upstream.url))  # type: ignore[attr-defined]


@pytest.fixture
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=GATEWAY_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=GATEWAY_KEY, max_retries=0) as sdk:
        yield sdk


# --- the real command, as operators run it ------------------------------------------------------------------


@pytest.fixture
def policy_file(tmp_path: Path, fake_upstream: FakeUpstream) -> Callable[..., Path]:
    def write(**sections: object) -> Path:
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(base_policy(fake_upstream.url, **sections)))  # type: ignore[attr-defined]
        return path

    return write


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Start real ``python -m gateway serve`` processes for a policy file; killed at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(policy: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        log = open(tmp_path / f"gateway-{port}.log", "w+")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(policy),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(Path(log.name).read_text())

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
