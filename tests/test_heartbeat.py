"""Heartbeats and uptime: spans of beats, gaps counted as downtime, stored in Redis or the ledger file."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from gateway.heartbeat import Heartbeat, LineBeats, Span, StoreBeats, merge, uptime
from gateway.policy import Policy
from gateway.policy.core import StoreConfig
from gateway.policy.ledger import LedgerConfig
from gateway.reporting.source import Selection, read_ledger
from gateway.store import MemoryStore, RedisStore, connect_redis
from tests.fakes.redis_server import free_port


def span(component: str, start: float, last: float, end: float | None = None, instance: str = "i1") -> Span:
    return Span(component, instance, start, last, 5.0, end)


def test_uptime_counts_gaps_as_downtime() -> None:
    spans = [
        span("gateway", 0, 100),  # its last beat covers 1.5 intervals more: up to 107.5
        span("gateway", 120, 200, end=200),  # stopped cleanly at 200
        span("autoscaler", 0, 195),  # covers up to 202.5, cut at the period's end
    ]
    assert uptime(spans, 0, 200) == {"gateway": pytest.approx(187.5 / 200), "autoscaler": 1.0}


def test_a_component_is_up_while_any_of_its_processes_is() -> None:
    spans = [span("gateway", 0, 50, instance="a"), span("gateway", 40, 100, end=100, instance="b")]
    assert uptime(spans, 0, 100) == {"gateway": 1.0}
    assert uptime(spans, 200, 300) == {"gateway": 0.0}, "beats outside the period do not count"
    assert uptime([], 0, 100) == {}, "a component that never beat is unknown, not down"


def test_file_lines_of_one_span_merge_to_its_latest_state() -> None:
    lines = [
        span("gateway", 0, 5),
        span("gateway", 0, 10),
        span("gateway", 0, 12, end=12),
        span("gateway", 0, 11),
    ]
    assert merge(lines) == [span("gateway", 0, 12, end=12)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_missed_beat_ends_the_span_and_a_stop_ends_the_last() -> None:
    store, clock = MemoryStore(), Clock()
    config = LedgerConfig(heartbeat_interval_s=5)
    beats = StoreBeats(store, "p:", config)
    heartbeat = Heartbeat("gateway", 5, beats, clock)
    for now in (1000, 1005, 1010, 1030):  # 1010 -> 1030 is more than 1.5 intervals: a gap
        clock.now = now
        await heartbeat.beat()
    key = f"p:heartbeat:gateway:{heartbeat.instance}"
    assert Span.from_dict(orjson.loads(await store.get(key))).start == 1030
    clock.now = 1032
    await heartbeat.stop()
    assert await store.get(key) is None, "a clean stop removes the live key"
    ended = [
        Span.from_dict(orjson.loads(e["span"])) for e in await store.read_log(config.heartbeat_stream, 10)
    ]
    assert sorted((s.start, s.until) for s in ended) == [(1000, 1017.5), (1030, 1032)]
    assert uptime(ended, 1000, 1040) == {"gateway": pytest.approx((17.5 + 2) / 40)}


async def test_line_beats_go_through_the_ledger_queue() -> None:
    lines: list[dict[str, object]] = []
    heartbeat = Heartbeat("gateway", 5, LineBeats(lines.append), Clock())
    await heartbeat.beat()
    await heartbeat.stop()
    assert [line["kind"] for line in lines] == ["heartbeat", "heartbeat"] and "end" in lines[-1]


async def test_a_heartbeat_beats_inside_async_with_and_ends_its_span_on_exit() -> None:
    lines: list[dict[str, object]] = []
    async with Heartbeat("gateway", 5, LineBeats(lines.append), Clock()) as heartbeat:
        await asyncio.sleep(0)  # its task writes the first beat, then sleeps for the interval
        assert [("end" in line) for line in lines] == [False]
    assert [("end" in line) for line in lines] == [False, True]
    assert heartbeat.span is None and heartbeat._task is None


async def test_the_report_reads_spans_from_redis(redis_url: str) -> None:
    policy = Policy.model_validate({"store": {"url": redis_url}, "ledger": {"heartbeat_interval_s": 0.05}})
    store = RedisStore(connect_redis(StoreConfig(url=redis_url)))
    gateway = Heartbeat("gateway", 0.05, StoreBeats(store, policy.store.prefix, policy.ledger))
    scaler = Heartbeat("autoscaler", 0.05, StoreBeats(store, policy.store.prefix, policy.ledger))
    gateway.start()
    scaler.start()
    await asyncio.sleep(0.3)
    await scaler.stop()  # ended: in the stream; the gateway's span is still live: a key
    assert gateway.span is not None
    start, now = gateway.span.start, gateway.span.last
    data = await asyncio.to_thread(read_ledger, redis_url, policy, Selection(), False)
    await gateway.stop()
    await store.close()
    assert {s.component for s in data.spans} == {"gateway", "autoscaler"}
    assert uptime(data.spans, start, now) == {"gateway": 1.0, "autoscaler": pytest.approx(1.0, abs=0.2)}


def test_the_autoscaler_sidecar_beats_until_it_stops(redis_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
store: {{url: "{redis_url}"}}
ledger: {{heartbeat_interval_s: 0.1}}
autoscaler: {{listen_host: 127.0.0.1, listen_port: {free_port()}, targets: [{{name: agents}}]}}
"""
    )
    client = redis.Redis.from_url(redis_url)
    entry = "import sys; from gateway.cli import main; main(['autoscale', '--config', sys.argv[1]])"
    proc = subprocess.Popen([sys.executable, "-c", entry, str(policy)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not list(client.scan_iter(match="llmgw:heartbeat:autoscaler:*")):
            assert time.monotonic() < deadline and proc.poll() is None, "no heartbeat from the sidecar"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    ((_, fields),) = client.xrange("llm_heartbeats")
    ended = Span.from_dict(orjson.loads(fields[b"span"]))
    assert ended.component == "autoscaler" and ended.end is not None
    assert not list(client.scan_iter(match="llmgw:heartbeat:*")), "a clean stop leaves no live key"
    client.close()
