"""The request ledger: exactly one record per request with the right fields, written without ever
slowing or failing a request, to a Redis stream or a bounded local file."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway import metrics
from gateway.context import Outcome, Request, Usage
from gateway.ledger import SCHEMA, Finished, LedgerRecord, RecordBuilder, RequestLedger
from gateway.ledger.record import written
from gateway.ledger.schema import FIELDS
from gateway.ledger.sinks import FileSink, Sink, files_oldest_first
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.protocols import CHAT
from gateway.reporting.source import Selection, parse_time, read_ledger
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.ledger_helpers import batch_responder, chat, file_lines, running, stream_records

PRICED = {
    "gpt-4o-mini": {
        "provider": "openai",
        "tier": "small",
        "price": {"input_per_mtok": 1, "output_per_mtok": 2},
    },
    "gpt-4.1": {
        "provider": "openai",
        "tier": "large",
        "price": {"input_per_mtok": 10, "output_per_mtok": 20},
    },
    "text-embedding-3-small": {"provider": "openai", "tier": "small"},
}


def post(
    url: str, body: Any, request_id: str, key: str | None = GATEWAY_KEY, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else None
    return httpx.post(
        f"{url}/v1/chat/completions",
        content=content,
        json=None if content is not None else body,
        headers={"X-Request-Id": request_id, **headers},
        timeout=10,
    )


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [r["request_id"] for r in records]
    assert len(ids) == len(set(ids)), "one record per request, never two"
    return {r["request_id"]: r for r in records}


SECRET_PROMPT = "refactor the function that holds the password hunter2"


def test_every_request_leaves_exactly_one_record(fake_upstream: FakeUpstream, redis_url: str) -> None:
    policy = base_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        cache={"enabled": True},
        ledger={"enabled": True},
        models=PRICED,
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": 9}
    with running(policy) as url:
        assert post(url, body, "miss", **{"X-Task-Type": "qa", "X-Priority": "P1"}).status_code == 200
        hit = post(url, body, "hit")
        assert hit.headers["X-Cache"] == "HIT"
        assert post(url, body, "no-key", key=None).status_code == 401
        assert post(url, b"{not json", "bad-json").status_code == 400
        fake_upstream.fail_model("gpt-4.1")
        failed = post(url, {**body, "model": "gpt-4.1"}, "failed")
        assert failed.status_code == 502
        streamed = post(url, {**body, "stream": True, "max_tokens": 7}, "stream")
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
        fake_upstream.hang_next(seconds=5)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up: the gateway cancels the call
            httpx.post(
                f"{url}/v1/chat/completions",
                json={**body, "max_tokens": 8},
                headers={"Authorization": f"Bearer {GATEWAY_KEY}", "X-Request-Id": "gone"},
                timeout=0.3,
            )
        listed = httpx.get(
            f"{url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}", "X-Request-Id": "ls"}
        )
        assert listed.status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes are not requests of the API
    records = by_id(stream_records(redis_url))
    assert set(records) == {"miss", "hit", "no-key", "bad-json", "failed", "stream", "gone", "ls"}
    assert {r["schema"] for r in records.values()} == {SCHEMA}, "every record says its shape's version"
    assert records["stream"]["stream"] is True and records["stream"]["tokens_used"] > 0
    assert records["gone"]["status"] == 499 and "tokens_used" not in records["gone"]
    assert records["ls"]["endpoint"] == "models"
    miss, hit_record = records["miss"], records["hit"]
    usage = hit.json()["usage"]
    assert miss["status"] == 200 and miss["cache"] == "MISS" and miss["agent"] == "agent-1"
    assert (miss["team"], miss["task_type"], miss["priority"], miss["max_tokens"]) == (
        "backend",
        "qa",
        "P1",
        9,
    )
    assert miss["tokens_used"] == usage["total_tokens"] and "tokens_saved" not in miss
    assert miss["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6
    )
    assert miss["latency_ms"] >= miss["upstream_ms"] > 0
    assert hit_record["cache"] == "HIT" and hit_record["cache_key"] == miss["cache_key"]
    assert hit_record["content_key"] == miss["content_key"]
    assert hit_record["tokens_used"] == 0 and hit_record["cost_usd"] == 0
    assert (hit_record["tokens_saved"], hit_record["saved_reason"]) == (usage["total_tokens"], "cache")
    assert hit_record["baseline_cost_usd"] == miss["cost_usd"], "a hit's baseline is the answer it served"
    assert records["no-key"]["status"] == 401 and records["no-key"]["error"] == "missing_api_key"
    assert "agent" not in records["no-key"] and records["no-key"]["endpoint"] == "chat.completions"
    assert (records["bad-json"]["status"], records["bad-json"]["error"]) == (400, "invalid_json")
    assert records["failed"]["status"] == 502 and "tokens_used" not in records["failed"]
    assert records["failed"]["model"] == "gpt-4.1"
    raw = str(stream_records(redis_url))
    assert "hunter2" not in raw and "prompt" not in miss, "no prompt text unless the policy opts in"


def test_batch_members_and_budget_refusals(fake_upstream: FakeUpstream, redis_url: str) -> None:
    fake_upstream.responder = batch_responder()
    sprint = {"id": "s1", "total_tokens": 1200, "agents": ["agent-1"]}
    policy = base_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        ledger={"enabled": True},
        batching={"window_ms": 300, "max_added_ms": 60000},  # mechanics, not the latency bound
        budgets={"sprints": [sprint], "default_max_tokens": 50},
    )
    tasks = [f"rename variable v{i} in module m{i}" for i in range(3)]
    headers = {"X-Task-Type": "refactor", "X-Lines-Estimate": "20"}

    async def traffic(url: str) -> list[Any]:
        return list(await asyncio.gather(*(chat(url, t, **headers) for t in tasks)))

    with running(policy) as url:
        answers = asyncio.run(traffic(url))
        refused = None
        for _ in range(50):  # spend what the batch left of the sprint's budget
            try:
                asyncio.run(chat(url, "one more " * 50, **{"X-Task-Type": "creative"}))
            except openai.RateLimitError as exc:
                refused = exc
                break
        assert refused is not None and refused.code == "budget_exceeded"
    records = stream_records(redis_url)
    by_id(records)
    members = [r for r in records if r.get("batch_id")]
    batch_id = answers[0].headers["X-Gateway-Batch"].split(";")[0]
    assert len(members) == 3 and {r["batch_id"] for r in members} == {batch_id}
    assert all(
        r["batch_size"] == 3 and r["saved_reason"] == "batch" and r["tokens_saved"] > 0 for r in members
    )
    assert all(r["batch_wait_ms"] > 0 and r["task_tokens"] > 0 for r in members)
    assert len({r["batch_group"] for r in members}) == 1
    shares = [a.parse().usage.total_tokens for a in answers]
    assert sorted(r["tokens_used"] for r in members) == sorted(shares)
    blocked = [r for r in records if r["status"] == 429]
    assert len(blocked) == 1 and blocked[0]["error"] == "budget_exceeded" and blocked[0]["sprint"] == "s1"
    assert "tokens_used" not in blocked[0]
    assert all(r["sprint"] == "s1" for r in records)


def test_memory_store_writes_a_file_with_heartbeats_and_prompts_on_request(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = {"enabled": True, "file": str(path), "include_prompts": True, "heartbeat_interval_s": 0.05}
    policy = base_policy(fake_upstream.url, ledger=ledger)  # type: ignore[attr-defined]
    with running(policy) as url:
        asyncio.run(chat(url, SECRET_PROMPT))
        asyncio.run(asyncio.sleep(0.3))
    records, beats = file_lines(path)
    assert len(records) == 1 and records[0]["prompt"][-1]["content"] == SECRET_PROMPT
    assert len(beats) >= 3 and {b["component"] for b in beats} == {"gateway"}
    assert beats[-1]["end"] >= beats[-2]["last"], "a clean stop ends the span"


class FailingSink(Sink):
    reason = "store_error"

    def __init__(self) -> None:
        self.calls = 0

    async def write(self, lines: list[bytes]) -> None:
        self.calls += 1
        raise ConnectionError("store down")


def sample_dropped(reason: str) -> float:
    return metrics.LEDGER_DROPPED.labels(reason)._value.get()  # type: ignore[no-any-return]


async def test_writing_never_waits_and_counts_what_it_drops() -> None:
    builder = RecordBuilder(Policy(), PriceBook({}))
    done = Finished("r", "/v1/chat/completions", 200, 1.0, 0.1)
    queue_full, store_error = sample_dropped("queue_full"), sample_dropped("store_error")
    idle = RequestLedger(FailingSink(), builder, queue_size=10, batch_size=5)  # never started: queue fills
    for _ in range(15):
        idle.record(done, None)
    assert sample_dropped("queue_full") - queue_full == 5
    sink = FailingSink()
    failing = RequestLedger(sink, builder, queue_size=100, batch_size=50)
    await failing.start()
    for _ in range(7):
        failing.record(done, Outcome(Request("r", CHAT, "a", "t"), "m"))
    await failing.close()
    assert sink.calls == 1 and sample_dropped("store_error") - store_error == 7


def test_file_rotation_keeps_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    sink = FileSink(path, max_bytes=4096, backups=2)
    line = b"x" * 1000
    for _ in range(20):
        asyncio.run(sink.write([line]))
    files = files_oldest_first(path)
    assert [f.name for f in files] == ["l.jsonl.2", "l.jsonl.1", "l.jsonl"]
    assert all(f.stat().st_size <= 4096 for f in files)


OLD_SHAPE = {  # as the gateway wrote records before they carried a schema version
    "time": "2030-01-01T10:00:00.000Z",
    "request_id": "r1",
    "endpoint": "chat.completions",
    "status": 200,
    "latency_ms": 200,
    "agent": "a1",
    "team": "backend",
    "requested_model": "auto",
    "model": "gpt-4o-mini",
    "cache": "MISS",
    "prompt_tokens": 100,
    "completion_tokens": 50,
    "tokens_used": 150,
    "tokens_saved": 30,
    "saved_reason": "batch",
    "cost_usd": 0.0003,
}


def test_records_before_schema_versions_still_load() -> None:
    record = LedgerRecord.from_record(OLD_SHAPE)
    assert record.schema == 0 and record.arrival == parse_time("2030-01-01T10:00:00Z")
    assert (record.agent, record.latency_ms, record.upstream_ms) == ("a1", 200.0, None)
    assert record.usage == Usage(100, 50) and record.alone == Usage(130, 50)
    assert record.to_record() == {**OLD_SHAPE, "schema": 0}, "read back as it was written"


def test_a_record_round_trips_with_its_version() -> None:
    builder = RecordBuilder(Policy(), PriceBook({}))
    ctx = Outcome(Request("r", CHAT, "a", "t", task_type="refactor", lines_estimate=12), "m")
    built = builder.build(Finished("r", "/v1/chat/completions", 200, 1893492000.25, 0.1), ctx)
    row = orjson.loads(orjson.dumps(written(built)))
    assert row["schema"] == SCHEMA and row["time"] == "2030-01-01T10:00:00.250Z"
    assert row["task_type"] == "refactor" and "tokens_used" not in row, "fields that do not apply: left out"
    assert LedgerRecord.from_record(row) == built
    newer = LedgerRecord.from_record({**row, "schema": SCHEMA + 1, "added_later": [1]})
    assert newer.schema == SCHEMA + 1 and newer.lines == 12, "a newer record's unknown fields are skipped"


@pytest.mark.parametrize(
    "broken",
    [
        {k: v for k, v in OLD_SHAPE.items() if k != "time"},
        {**OLD_SHAPE, "time": "yesterday"},
        {**OLD_SHAPE, "status": "200"},
        {**OLD_SHAPE, "tokens_used": True},
        {**OLD_SHAPE, "latency_ms": "fast"},
        {**OLD_SHAPE, "agent": ["a1"]},
    ],
)
def test_rows_that_are_not_records_are_counted_unreadable(broken: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(OLD_SHAPE) + b"\n" + orjson.dumps(broken) + b"\n")
    data = read_ledger(str(path), Policy(), Selection(), show_progress=False)
    assert [r.request_id for r in data.records] == ["r1"] and data.unreadable == 1


def documented_fields() -> set[str]:
    """The field names in the first column of the record field table, wherever the docs keep it."""
    root = Path(__file__).parent.parent
    tables = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]:
        lines = doc.read_text().splitlines() if doc.exists() else []
        if "| record field | meaning |" in lines:
            start = lines.index("| record field | meaning |") + 2
            rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
            tables.append({name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])})
    assert len(tables) == 1, "one record field table in the docs"
    return tables[0]


def test_the_record_field_table_documents_exactly_the_schema() -> None:
    documented = documented_fields()
    assert sorted(set(FIELDS) - documented) == [], "fields written but not documented"
    assert sorted(documented - set(FIELDS)) == [], "fields documented but never written"
