"""``llm-gateway replay``: traffic recorded through a real gateway, replayed offline. With the recorded
policy it gives back the recorded KPIs; with another TTL, batch window, routing or budget the figures
move the way that policy would have moved them."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.cli import main
from gateway.context import Usage
from gateway.ledger.schema import LedgerRecord
from gateway.policy import Policy, load_policy
from gateway.reporting.compare import replayed_summary
from gateway.reporting.kpis import Summary
from gateway.reporting.replay_batch import Member, batch_sizes, shares
from gateway.reporting.report import load
from gateway.reporting.source import Selection
from tests.conftest import base_policy
from tests.fakes.upstream import FakeUpstream
from tests.ledger_helpers import batch_responder, chat, running

PRICE = {"small": (0.15, 0.6), "medium": (0.4, 1.6), "large": (2.0, 8.0)}
MODELS = {
    name: {
        "provider": "openai",
        "tier": tier,
        "price": {"input_per_mtok": PRICE[tier][0], "output_per_mtok": PRICE[tier][1]},
    }
    for name, tier in (("gpt-4o-mini", "small"), ("gpt-4.1-mini", "medium"), ("gpt-4.1", "large"))
}
ROUTING = {
    "aliases": ["auto"],
    "rules": [
        {"name": "refactor", "when": {"task_types": ["refactor"]}, "use": {"tier": "medium"}},
        {"name": "creative", "when": {"task_types": ["creative"]}, "use": {"tier": "large"}},
    ],
}
REFACTOR = {"X-Task-Type": "refactor", "X-Lines-Estimate": "20"}
TASKS = [
    "rename variable v0 in module m0",
    "extract the retry loop of the http client in module net into a helper function",
    "inline x",
]
"""Of different lengths, so the batch's recorded shares are not what an estimate would give."""


def recorded_policy(fake: FakeUpstream, redis_url: str) -> dict[str, Any]:
    return base_policy(
        fake.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        models=MODELS,
        routing=ROUTING,
        cache={"enabled": True},
        batching={"window_ms": 300, "max_added_ms": 60000},  # mechanics, not the latency bound
        ledger={"enabled": True},
    )


async def traffic(url: str) -> None:
    await chat(url, "what does this module do?", model="auto", **{"X-Task-Type": "qa"})  # miss
    await chat(url, "what does this module do?", model="auto", **{"X-Task-Type": "qa"})  # hit
    await asyncio.gather(*(chat(url, task, model="auto", **REFACTOR) for task in TASKS))  # one batch
    await chat(url, TASKS[0], model="auto", **REFACTOR)  # hit (cached under its own key)
    await chat(url, "design the plugin system", model="auto", **{"X-Task-Type": "creative"})  # miss
    await asyncio.sleep(1.3)
    await chat(url, "what does this module do?", model="auto", **{"X-Task-Type": "qa"})  # hit, 1.3 s old


@pytest.fixture
def recorded(
    fake_upstream: FakeUpstream, redis_url: str
) -> tuple[dict[str, Any], Summary, list[LedgerRecord]]:
    """The traffic above, recorded through a real gateway: (policy, recorded summary, records)."""
    fake_upstream.responder = batch_responder()
    policy = recorded_policy(fake_upstream, redis_url)
    with running(policy) as url:
        asyncio.run(traffic(url))
    data, summary = load(redis_url, Policy.model_validate(policy), Selection(), show_progress=False)
    assert (summary.hits, summary.misses, summary.batches, summary.batch_members) == (3, 5, 1, 3)
    return policy, summary, data.records


def replay(policy: dict[str, Any], summary: Summary, records: list[LedgerRecord]) -> Summary:
    return replayed_summary(Policy.model_validate(policy), records, summary)


def changed(policy: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    other = copy.deepcopy(policy)
    for name, values in sections.items():
        other[name] = {**other.get(name, {}), **values}
    return other


def test_replaying_the_recorded_policy_reproduces_the_recorded_kpis(recorded: Any) -> None:
    policy, summary, records = recorded
    again = replay(policy, summary, records)
    before, after = summary.kpis(), again.kpis()
    assert after["hit_rate"] == before["hit_rate"] == 3 / 8
    assert after["batch_efficiency"] == before["batch_efficiency"]
    assert after["token_reduction"] == before["token_reduction"]
    assert after["p95_latency_ms"] == pytest.approx(before["p95_latency_ms"], abs=25)
    assert again.routing == summary.routing
    assert (again.answered, again.batches, again.batch_members) == (summary.answered, 1, 3)
    assert (again.tokens_used, again.saved_cache, again.saved_batch, again.batch_used) == (
        summary.tokens_used,
        summary.saved_cache,
        summary.saved_batch,
        summary.batch_used,
    )
    assert (again.cost_usd, again.baseline_cost_usd) == (summary.cost_usd, summary.baseline_cost_usd)
    assert {name: line.tokens_used for name, line in again.agents.items()} == {
        name: line.tokens_used for name, line in summary.agents.items()
    }


def test_a_batch_replayed_with_other_members_is_estimated(recorded: Any) -> None:
    """Only the recorded batch keeps its recorded shares: the same tasks in a smaller batch, or with a
    member that was not in it, are estimated (and still save tokens)."""
    policy, summary, records = recorded
    members = [r for r in records if r.batch_id]
    pair = replay(changed(policy, batching={"max_batch": 2}), summary, records)
    recorded_pair = sum(r.tokens_used or 0 for r in members[:2])
    assert (pair.batches, pair.batch_members) == (1, 2)
    assert pair.batch_used != recorded_pair, "two of three members: not the recorded batch"
    assert 0 < pair.saved_batch < summary.saved_batch
    first = records.index(members[0])
    stranger = [*records[:first], replace(members[0], batch_id="another-batch"), *records[first + 1 :]]
    mixed = replay(policy, summary, stranger)
    assert mixed.batch_members == 3 and mixed.saved_batch > 0
    assert mixed.batch_used != summary.batch_used, "a member from elsewhere: estimated"


def test_a_shorter_ttl_loses_the_late_hit(recorded: Any) -> None:
    policy, summary, records = recorded
    short = replay(changed(policy, cache={"ttl_s": 1.0}), summary, records)
    assert (short.hits, short.misses) == (2, 6)
    assert short.kpis()["token_reduction"] < summary.kpis()["token_reduction"]
    assert short.tokens_used > summary.tokens_used


def test_without_batching_nothing_is_batched_and_a_smaller_batch_saves_less(recorded: Any) -> None:
    policy, summary, records = recorded
    for batching in ({"enabled": False}, {"task_types": ["test"]}):
        alone = replay(changed(policy, batching=batching), summary, records)
        assert alone.batches == 0 and alone.kpis()["batch_efficiency"] is None
        assert alone.tokens_used > summary.tokens_used
    smaller = replay(changed(policy, batching={"max_batch": 2}), summary, records)
    assert (smaller.batches, smaller.batch_members) == (1, 2), "the third task waits alone"
    assert 0 < smaller.saved_batch < summary.saved_batch


def test_routing_everything_to_the_large_model_costs_more(recorded: Any) -> None:
    policy, summary, records = recorded
    large = replay(changed(policy, routing={"rules": [], "default": {"tier": "large"}}), summary, records)
    assert {model for (_, model, _) in large.routing} == {"gpt-4.1"}
    assert large.cost_usd > summary.cost_usd
    assert large.cost_reduction is not None and large.cost_reduction < (summary.cost_reduction or 0)


def test_a_tight_budget_blocks_requests(recorded: Any) -> None:
    policy, summary, records = recorded
    sprint = {"id": "s1", "total_tokens": 3000, "agents": ["agent-1"]}
    tight = replay(
        changed(policy, budgets={"sprints": [sprint], "default_max_tokens": 1000}), summary, records
    )
    assert summary.refused_budget == 0 and tight.refused_budget > 0
    assert tight.answered == summary.answered - tight.refused_budget


def test_cli_prints_recorded_and_replayed_side_by_side(
    recorded: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _, _ = recorded
    path = tmp_path / "what-if.yaml"
    path.write_text(yaml.safe_dump(changed(policy, cache={"ttl_s": 1.0})))
    load_policy(path)
    with pytest.raises(SystemExit) as exit_:
        main(["replay", redis_url, "--config", str(path), "--format", "json"])
    assert exit_.value.code == 0
    out = orjson.loads(capsys.readouterr().out)
    hit_rate = {
        side: {k["name"]: k["value"] for k in out[side]["kpis"]}["hit_rate"]
        for side in ("recorded", "replayed")
    }
    assert hit_rate == {"recorded": 3 / 8, "replayed": 2 / 8}
    with pytest.raises(SystemExit):
        main(["replay", redis_url, "--config", str(path)])
    table = capsys.readouterr().out
    assert "What-if replay" in table and "recorded  replayed" in table


def test_shares_reuse_the_recorded_split_only_for_the_whole_recorded_batch() -> None:
    def member(task: int, batch_id: str | None, share: Usage | None) -> Member:
        return Member(None, 0.0, 100 + task, task, Usage(100 + task, 10), batch_id, share)

    recorded = [
        member(5, "b1", Usage(41, 10)),
        member(30, "b1", Usage(70, 10)),
        member(9, "b1", Usage(44, 9)),
    ]
    sizes = batch_sizes(["b1", "b1", None, "b1", "b2"])
    assert shares(recorded, False, sizes) == [Usage(41, 10), Usage(70, 10), Usage(44, 9)]
    for group in (
        recorded[:2],
        [*recorded[:2], member(9, "b2", Usage(44, 9))],
        [*recorded[:2], member(9, None, None)],
    ):
        estimated = shares(group, False, sizes)
        assert estimated != [m.share for m in group]
        assert [u.completion_tokens for u in estimated] == [m.alone.completion_tokens for m in group]
        assert sum(u.prompt_tokens for u in estimated) < sum(m.alone.prompt_tokens for m in group)
    assert shares([recorded[0]], False, sizes) == [recorded[0].alone], "a group of one is sent alone"
