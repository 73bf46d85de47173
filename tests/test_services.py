"""gateway/services.py: every long-lived part starts in one place and what started closes in reverse order,
also when a later part fails to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import services
from gateway.batcher import Batcher
from gateway.budget import BudgetManager
from gateway.heartbeat import Heartbeat
from gateway.ledger import RequestLedger
from gateway.policy import Policy, ProviderConfig
from gateway.providers import Provider, ProviderRequest, UpstreamReply, build_provider
from gateway.router import RoutingLog
from gateway.server import create_app
from gateway.services import Services
from gateway.store import MemoryStore
from tests.conftest import base_policy


class Events(list[str]):
    """What the parts did, in order; ``failing``: the providers whose start fails."""

    failing: set[str]


class FakeProvider(Provider):
    def __init__(self, name: str, config: ProviderConfig, events: Events, fails: bool) -> None:
        super().__init__(name, config)
        self.events, self.fails = events, fails

    async def start(self) -> None:
        self.events.append(f"start {self.name}")
        if self.fails:
            raise OSError(f"{self.name} cannot start")

    async def close(self) -> None:
        self.events.append(f"close {self.name}")

    async def send(self, request: ProviderRequest) -> UpstreamReply:
        raise AssertionError("not called")


class RecordingStore(MemoryStore):
    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    async def close(self) -> None:
        self.events.append("close store")


def policy_of(tmp_path: Path, **sections: Any) -> Policy:
    data = base_policy("http://127.0.0.1:9", **sections)
    data["providers"] = {name: {"base_url": "http://127.0.0.1:9/v1"} for name in ("a", "b", "c")}
    data["models"] = {"m": {"provider": "a"}}
    data["ledger"] = {"file": str(tmp_path / "ledger.jsonl"), **data["ledger"]}
    return Policy.model_validate(data)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Fake providers and a recording store, built by gateway/services.py in place of the real ones."""
    events = Events()
    events.failing = set()
    monkeypatch.setattr(services, "open_store", lambda config: RecordingStore(events))
    monkeypatch.setattr(
        services, "build_provider", lambda name, cfg: FakeProvider(name, cfg, events, name in events.failing)
    )
    return events


def record(monkeypatch: pytest.MonkeyPatch, events: Events, cls: type, method: str, label: str) -> None:
    """``cls.method`` still runs, and first notes ``label`` in ``events``."""
    original = getattr(cls, method)

    async def noted(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append(label)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, noted)


async def test_a_part_that_fails_to_start_closes_the_parts_before_it_and_nothing_after(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events.failing.add("b")
    record(monkeypatch, events, BudgetManager, "start", "start budget")
    with pytest.raises(OSError, match="b cannot start"):
        async with Services.open(policy_of(tmp_path)):
            raise AssertionError("started although a provider failed")
    assert events == ["start a", "start b", "close a", "close store"]


async def test_every_part_closes_in_reverse_order(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record(monkeypatch, events, BudgetManager, "start", "start budget")
    record(monkeypatch, events, BudgetManager, "close", "close budget")
    record(monkeypatch, events, RoutingLog, "drain", "drain routing log")
    record(monkeypatch, events, Batcher, "close", "close batcher")
    record(monkeypatch, events, RequestLedger, "start", "start ledger")
    record(monkeypatch, events, RequestLedger, "close", "close ledger")
    record(monkeypatch, events, Heartbeat, "stop", "stop heartbeat")
    async with Services.open(policy_of(tmp_path, ledger={"enabled": True})) as running:
        assert running.ledger is not None
        started = list(events)
    assert started == ["start a", "start b", "start c", "start budget", "start ledger"]
    assert events[len(started) :] == [
        "stop heartbeat",  # it writes to the ledger: first to stop
        "close ledger",
        "close batcher",  # waiting batches go out while the providers are open
        "drain routing log",  # routing-log appends and budget settlements reach the store before it closes
        "close budget",
        "close c",
        "close b",
        "close a",
        "close store",
    ]


async def test_a_later_failure_closes_everything_started_before_it(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def refuse(self: RequestLedger) -> None:
        raise OSError("the ledger cannot start")

    monkeypatch.setattr(RequestLedger, "start", refuse)
    record(monkeypatch, events, RequestLedger, "close", "close ledger")
    record(monkeypatch, events, Batcher, "close", "close batcher")
    with pytest.raises(OSError, match="ledger cannot start"):
        async with Services.open(policy_of(tmp_path, ledger={"enabled": True})):
            raise AssertionError("started although the ledger failed")
    assert "close ledger" not in events
    assert events[-5:] == ["close batcher", "close c", "close b", "close a", "close store"]


async def test_a_store_passed_in_stays_open(events: Events, tmp_path: Path) -> None:
    given = RecordingStore(events)
    async with Services.open(policy_of(tmp_path), store=given) as running:
        assert running.store is given
    assert events == ["start a", "start b", "start c", "close c", "close b", "close a"]


async def test_the_app_closes_its_providers_and_store_on_shutdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events = Events()
    built: list[Provider] = []

    def build(name: str, config: ProviderConfig) -> Provider:
        built.append(build_provider(name, config))
        return built[-1]

    monkeypatch.setattr(services, "open_store", lambda config: RecordingStore(events))
    monkeypatch.setattr(services, "build_provider", build)
    runner = web.AppRunner(create_app(policy_of(tmp_path)))
    await runner.setup()
    sessions = [provider._session for provider in built]  # type: ignore[attr-defined]
    assert [provider.name for provider in built] == ["a", "b", "c"]
    assert all(session is not None and not session.closed for session in sessions)
    await runner.cleanup()
    assert all(session.closed for session in sessions)
    assert events == ["close store"]
